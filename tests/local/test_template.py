"""template.py and cfn_yaml.py: short-form tags, the typed view of a SAM template, and what it refuses."""

from __future__ import annotations

import re
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
        "ScheduledRunFailures",
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
    # The static answers: liveness, and the retailCRM module's logo and page (edge/static.py).
    event, *_ = health.http_events
    assert (event.path, event.method, event.api_id) == ("/health", "GET", {"Ref": "HttpApi"})
    assert [e.path for e in health.http_events[1:]] == ["/v1/retailcrm/logo.svg", "/v1/{account}/retailcrm/about"]

    settle = template.functions["CallSettleFunction"]
    [sqs] = settle.sqs_events
    assert sqs.queue == {"Fn::GetAtt": ["CallSettleQueue", "Arn"]}
    assert sqs.batch_size == 10 and sqs.reports_batch_item_failures
    assert template.code_dir(settle) == ROOT / "functions"


def test_events_of_every_emulated_kind():
    raw = cfn_yaml.loads(
        textwrap.dedent(
            """
            Globals:
              Function:
                Timeout: 7
                Environment: {Variables: {A: global, B: global}}
            Resources:
              Api: {Type: AWS::Serverless::HttpApi}
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  Handler: pkg.mod.main
                  Environment: {Variables: {B: own}}
                  Events:
                    Catch: {Type: HttpApi, Properties: {ApiId: !Ref Api}}
                    Lower: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /x, Method: post}}
                    Q: {Type: SQS, Properties: {Queue: arn:aws:sqs:us-east-1:1:q, MaximumBatchingWindowInSeconds: 2}}
                    Tick: {Type: Schedule, Properties: {Schedule: rate(5 minutes), Description: every 5 minutes}}
                    Nightly: {Type: Schedule, Properties: {Schedule: "cron(0 1 * * ? *)"}}
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
    api = {"Ref": "Api"}
    assert [(e.path, e.method, e.api_id) for e in fn.http_events] == [(None, "ANY", api), ("/x", "POST", api)]
    [q] = fn.sqs_events
    assert (q.batch_size, q.function_response_types, q.reports_batch_item_failures) == (10, (), False)
    assert [(s.name, s.expression) for s in fn.schedule_events] == [
        ("Tick", "rate(5 minutes)"),
        ("Nightly", "cron(0 1 * * ? *)"),
    ]


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


def _function_with(event: str) -> str:
    return f"Fn: {{Type: AWS::Serverless::Function, Properties: {{Handler: a.b, Events: {{E: {event}}}}}}}"


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        # Resource types it neither emulates nor knows to skip.
        ("P: {Type: AWS::SSM::Parameter, Properties: {Type: String, Value: x}}", "type AWS::SSM::Parameter is not"),
        (
            "R: {Type: AWS::Events::Rule, Properties: {ScheduleExpression: rate(1 hour)}}",
            "type AWS::Events::Rule is not",
        ),
        ("L: {Type: AWS::Lambda::Function, Properties: {}}", "type AWS::Lambda::Function is not supported"),
        # Properties of emulated resources it would not honour.
        ("Q: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true}}", "AWS::SQS::Queue property FifoQueue is not"),
        (
            "T: {Type: AWS::DynamoDB::Table, Properties: {TableName: t, StreamSpecification: {}}}",
            "property StreamSpecification, TableName is not supported",
        ),
        ("A: {Type: AWS::Serverless::HttpApi, Properties: {CorsConfiguration: {}}}", "property CorsConfiguration"),
        # Events it does not drive, or would drive differently.
        (_function_with("{Type: SNS, Properties: {Topic: arn}}"), "event type 'SNS' is not supported"),
        (_function_with("{Type: ScheduleV2, Properties: {ScheduleExpression: rate(1 hour)}}"), "'ScheduleV2'"),
        (_function_with("{Type: Schedule, Properties: {Schedule: rate(1 hour), Enabled: false}}"), "property Enabled"),
        (_function_with("{Type: Schedule, Properties: {Schedule: rate(1 hour), Input: '{}'}}"), "property Input"),
        (_function_with("{Type: SQS, Properties: {Queue: arn, FilterCriteria: {}}}"), "property FilterCriteria"),
        (_function_with("{Type: HttpApi, Properties: {Path: /x, Method: GET}}"), "implicit API is not supported"),
    ],
)
def test_what_the_runtime_does_not_support_is_refused_by_name(resources, message):
    with pytest.raises(TemplateError, match=message):
        parse_template(cfn_yaml.loads(f"Resources:\n  {resources}\n"), ROOT / "t.yaml")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("Transform: AWS::LanguageExtensions", "Transform 'AWS::LanguageExtensions' is not supported"),
        ("Transform: [AWS::Serverless-2016-10-31, AWS::LanguageExtensions]", "'AWS::LanguageExtensions'"),
        ("Globals: {HttpApi: {CorsConfiguration: {}}}", "Globals.HttpApi is not supported"),
    ],
)
def test_transforms_and_globals_it_does_not_implement_are_refused(section, message):
    with pytest.raises(TemplateError, match=re.escape(message)):
        parse_template(cfn_yaml.loads(f"{section}\nResources: {{}}\n"), ROOT / "t.yaml")


def test_skipped_resources_are_not_looked_into():
    # Networking (another change puts a VPC behind a condition) and operations resources are
    # skipped whole: whatever intrinsics or properties they hold, the template loads.
    template = load_template(ROOT / "template.yaml")
    assert {"AWS::Logs::LogGroup", "AWS::CloudWatch::Alarm", "AWS::S3::BucketPolicy"} <= {
        r.type for r in template.resources.values()
    }
    raw = cfn_yaml.loads(
        textwrap.dedent(
            """
            Resources:
              Subnet:
                Type: AWS::EC2::Subnet
                Condition: UseVpc
                Properties:
                  AvailabilityZone: !Select [0, !GetAZs ""]
                  CidrBlock: !Select [0, !Cidr [!GetAtt Vpc.CidrBlock, 2, 8]]
                  Anything: {Fn::Transform: {Name: X}}
              Ip: {Type: AWS::EC2::EIP, Properties: {Domain: vpc}}
            """
        )
    )
    parsed = parse_template(raw, ROOT / "t.yaml")
    assert parsed.resources["Subnet"].read_properties() == {}
    assert parsed.resources["Ip"].type == "AWS::EC2::EIP"
