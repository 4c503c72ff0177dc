"""template.py and cfn_yaml.py: short-form tags and the typed view of a SAM template."""

from __future__ import annotations

import textwrap

import pytest

from callbridge_local import cfn_yaml
from callbridge_local.template import TemplateError, load_template, merge_globals, parse_template

from .conftest import ROOT, TEMPLATE


def test_every_short_form_tag_becomes_its_long_form():
    raw = cfn_yaml.loads(
        textwrap.dedent(
            """
            A: !Ref Table
            B: !GetAtt Queue.Arn
            C: !GetAtt [Queue, QueueName]
            D: !GetAtt Db.Endpoint.Address
            E: !Sub "/x/${AWS::StackName}"
            F: !Sub ["${A}-${B}", {A: !Ref P, B: b}]
            G: !Join [",", [a, !Ref P]]
            H: !If [IsProd, !Ref P, !Ref "AWS::NoValue"]
            I: !Select [1, !Split [",", "a,b,c"]]
            J: !FindInMap [Map, !Ref "AWS::Region", Key]
            K: !Equals [!Ref P, prod]
            L: !Not [!Condition IsProd]
            M: !And [!Condition X, !Or [!Condition Y, !Condition Z]]
            N: !ImportValue shared-vpc
            O: !Base64 hello
            Q: !GetAZs ""
            R: !Cidr [10.0.0.0/16, 4, 8]
            """
        )
    )
    assert raw["A"] == {"Ref": "Table"}
    assert raw["B"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert raw["C"] == {"Fn::GetAtt": ["Queue", "QueueName"]}
    assert raw["D"] == {"Fn::GetAtt": ["Db", "Endpoint.Address"]}
    assert raw["E"] == {"Fn::Sub": "/x/${AWS::StackName}"}
    assert raw["F"] == {"Fn::Sub": ["${A}-${B}", {"A": {"Ref": "P"}, "B": "b"}]}
    assert raw["G"] == {"Fn::Join": [",", ["a", {"Ref": "P"}]]}
    assert raw["H"] == {"Fn::If": ["IsProd", {"Ref": "P"}, {"Ref": "AWS::NoValue"}]}
    assert raw["I"] == {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}
    assert raw["J"] == {"Fn::FindInMap": ["Map", {"Ref": "AWS::Region"}, "Key"]}
    assert raw["K"] == {"Fn::Equals": [{"Ref": "P"}, "prod"]}
    assert raw["L"] == {"Fn::Not": [{"Condition": "IsProd"}]}
    assert raw["M"] == {"Fn::And": [{"Condition": "X"}, {"Fn::Or": [{"Condition": "Y"}, {"Condition": "Z"}]}]}
    assert raw["N"] == {"Fn::ImportValue": "shared-vpc"}
    assert raw["O"] == {"Fn::Base64": "hello"}
    assert raw["Q"] == {"Fn::GetAZs": ""}
    assert raw["R"] == {"Fn::Cidr": ["10.0.0.0/16", 4, 8]}


def test_dates_stay_strings_and_plain_yaml_is_untouched():
    raw = cfn_yaml.loads("AWSTemplateFormatVersion: 2010-09-09\nN: 5\nB: true\n")
    assert raw == {"AWSTemplateFormatVersion": "2010-09-09", "N": 5, "B": True}
    # The loader is a subclass: yaml.safe_load elsewhere still knows no CloudFormation tags.
    import yaml

    with pytest.raises(yaml.YAMLError):
        yaml.safe_load("A: !Ref X")


def test_malformed_getatt_and_yaml_are_reported():
    with pytest.raises(cfn_yaml.TemplateSyntaxError):
        cfn_yaml.loads("A: !GetAtt NoDot")
    with pytest.raises(cfn_yaml.TemplateSyntaxError):
        cfn_yaml.loads("A: [unclosed")


def test_the_real_template_as_a_typed_view():
    template = load_template(TEMPLATE)
    assert {"AccountsTable", "ContactsTable", "CallsTable", "RoutingCacheTable"} <= {
        t.logical_id for t in template.tables
    }
    # A schedule that is a template Parameter runs locally at the parameter's default.
    [sync] = template.functions["UserSyncFunction"].schedule_events
    assert sync.expression == template.parameters["UserSyncSchedule"].default == "rate(1 hour)"
    assert {q.logical_id for q in template.queues} == {
        "CallSettleQueue",
        "CallSettleDLQ",
        "RecordingFetchQueue",
        "RecordingFetchDLQ",
        "DeliveryQueue",
        "DeliveryDLQ",
    }
    assert {b.logical_id for b in template.buckets} == {"RecordingsBucket"}
    assert template.parameters["MissedCallSettleSeconds"].default == 30
    assert template.layer_python_dirs() == [ROOT / "layers" / "common" / "python"]

    health = template.functions["HealthFunction"]
    assert (health.code_uri, health.handler, health.module_name, health.function_name) == (
        "functions/",
        "health.handler",
        "health",
        "handler",
    )
    # Globals: MemorySize overridden by the function, Timeout and Environment inherited.
    assert (health.memory_size, health.timeout) == (128, 10)
    assert health.environment["CALLS_TABLE"] == {"Ref": "CallsTable"}
    assert health.environment["POWERTOOLS_SERVICE_NAME"] == "callbridge"
    [event] = health.http_events
    assert (event.path, event.method, event.api_id) == ("/health", "GET", {"Ref": "HttpApi"})

    settle = template.functions["CallSettleFunction"]
    [sqs] = settle.sqs_events
    assert sqs.queue == {"Fn::GetAtt": ["CallSettleQueue", "Arn"]}
    assert sqs.batch_size == 10 and sqs.reports_batch_item_failures
    assert template.code_dir(settle) == ROOT / "functions"


def test_events_of_every_emulated_kind_and_the_rest():
    raw = cfn_yaml.loads(
        textwrap.dedent(
            """
            Globals:
              Function:
                Timeout: 7
                Environment: {Variables: {A: global, B: global}}
            Resources:
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  Handler: pkg.mod.main
                  Environment: {Variables: {B: own}}
                  Events:
                    Catch: {Type: HttpApi}
                    Lower: {Type: HttpApi, Properties: {Path: /x, Method: post}}
                    Q: {Type: SQS, Properties: {Queue: arn:aws:sqs:us-east-1:1:q}}
                    Tick: {Type: Schedule, Properties: {Schedule: rate(5 minutes), Input: '{"a": 1}'}}
                    Off: {Type: Schedule, Properties: {Schedule: "cron(0 1 * * ? *)", Enabled: false}}
                    V2: {Type: ScheduleV2, Properties: {ScheduleExpression: rate(1 hour), State: DISABLED}}
                    Topic: {Type: SNS, Properties: {Topic: arn}}
            """
        )
    )
    fn = parse_template(raw, ROOT / "t.yaml").functions["Fn"]
    assert (fn.code_uri, fn.module_name, fn.function_name, fn.timeout, fn.memory_size) == (
        ".",
        "pkg.mod",
        "main",
        7,
        128,
    )
    assert fn.environment == {"A": "global", "B": "own"}
    assert [(e.path, e.method, e.api_id) for e in fn.http_events] == [(None, "ANY", None), ("/x", "POST", None)]
    [q] = fn.sqs_events
    assert (q.batch_size, q.function_response_types, q.reports_batch_item_failures) == (10, (), False)
    assert [(s.kind, s.expression, s.input, s.enabled) for s in fn.schedule_events] == [
        ("Schedule", "rate(5 minutes)", '{"a": 1}', True),
        ("Schedule", "cron(0 1 * * ? *)", None, False),
        ("ScheduleV2", "rate(1 hour)", None, False),
    ]
    assert fn.unsupported_events == (("Topic", "SNS"),)


def test_globals_merge_like_sam():
    merged = merge_globals(
        {"Layers": ["a"], "Environment": {"Variables": {"X": {"Ref": "P"}, "Y": "1"}}, "Timeout": 3},
        {"Layers": ["b"], "Environment": {"Variables": {"X": {"Fn::Sub": "s"}}}, "Timeout": 9},
    )
    assert merged == {
        "Layers": ["a", "b"],
        "Environment": {"Variables": {"X": {"Fn::Sub": "s"}, "Y": "1"}},
        "Timeout": 9,
    }


@pytest.mark.parametrize(
    "resources",
    [
        "Fn: {Type: AWS::Serverless::Function, Properties: {Handler: nodot}}",
        "Fn: {Type: AWS::Serverless::Function, Properties: {Handler: a.b, CodeUri: {Bucket: b, Key: k}}}",
        "Fn: {Type: AWS::Serverless::Function, Properties: {Handler: a.b, Events: {E: {Type: SQS}}}}",
        "Thing: {Properties: {}}",
    ],
)
def test_templates_the_runtime_cannot_emulate_are_rejected(resources):
    with pytest.raises(TemplateError):
        parse_template(cfn_yaml.loads(f"Resources:\n  {resources}\n"), ROOT / "t.yaml")
