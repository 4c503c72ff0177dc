"""template.py and cfn_yaml.py: short-form tags, the runtime's view of the transformed template, and what it
refuses."""

from __future__ import annotations

import re
import textwrap

import pytest

from callbridge_local import cfn_yaml
from callbridge_local.template import TemplateError, load_template, parse_template

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


def test_the_real_template_as_the_transform_builds_it():
    template = load_template(TEMPLATE)
    assert {"AccountsTable", "ContactsTable", "CallsTable", "RoutingCacheTable"} <= {
        t.logical_id for t in template.tables
    }
    # The schedule is the AWS::Events::Rule the transform made, its expression still the parameter.
    [sync] = template.functions["UserSyncFunction"].schedule_events
    assert (sync.name, sync.type, sync.expression) == (
        "UserSyncFunctionSync",
        "AWS::Events::Rule",
        {"Ref": "UserSyncSchedule"},
    )
    assert {q.logical_id for q in template.queues} == {
        "CallSettleQueue",
        "CallSettleDLQ",
        "RecordingFetchQueue",
        "RecordingFetchDLQ",
        "DeliveryQueue",
        "DeliveryDLQ",
        "LiveCardQueue",
        "LiveCardDLQ",
        "ScheduledRunFailures",
    }
    assert {b.logical_id for b in template.buckets} == {"RecordingsBucket"}
    assert template.parameters["MissedCallSettleSeconds"].default == 30
    assert template.layer_python_dirs() == [ROOT / "layers" / "common" / "python"]
    # Implicit resources exist as CloudFormation has them: roles, permissions, mappings, the API body.
    kinds = {r.type for r in template.resources.values()}
    assert {"AWS::IAM::Role", "AWS::Lambda::Permission", "AWS::Lambda::EventSourceMapping"} <= kinds
    assert "AWS::Serverless::Function" not in kinds

    health = template.functions["HealthFunction"]
    assert (health.code_uri, health.handler, health.module_name, health.function_name) == (
        "functions/",
        "health.handler",
        "health",
        "handler",
    )
    # Globals merged by the transform: MemorySize overridden by the function, Timeout and Environment inherited.
    assert (health.memory_size, health.timeout) == (128, 10)
    assert health.environment["CALLS_TABLE"] == {"Ref": "CallsTable"}
    assert health.environment["POWERTOOLS_SERVICE_NAME"] == "callbridge"
    assert health.role == "HealthFunctionRole"
    assert template.resources["HealthFunctionRole"].type == "AWS::IAM::Role"
    assert template.layer_python_dirs(health) == [ROOT / "layers" / "common" / "python"]
    # The static answers: liveness, and the retailCRM module's logo and page (edge/static.py).
    assert {(e.path, e.method, e.api) for e in health.http_events} == {
        ("/health", "GET", "HttpApi"),
        ("/v1/retailcrm/logo.svg", "GET", "HttpApi"),
        ("/v1/{account}/retailcrm/about", "GET", "HttpApi"),
    }

    settle = template.functions["CallSettleFunction"]
    [mapping] = settle.sqs_events
    assert (mapping.name, mapping.queue) == ("CallSettleFunctionSettle", "CallSettleQueue")
    assert mapping.properties["BatchSize"] == 10
    assert mapping.properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert template.code_dir(settle) == ROOT / "functions"
    [deliver] = template.functions["DeliveryFunction"].sqs_events
    assert (deliver.properties["BatchSize"], deliver.properties["MaximumBatchingWindowInSeconds"]) == (10, 0)
    [show] = template.functions["LiveCardFunction"].sqs_events
    assert (show.queue, show.properties["BatchSize"], show.properties["MaximumBatchingWindowInSeconds"]) == (
        "LiveCardQueue",
        10,
        0,
    )


def test_events_of_every_kind_come_from_the_transforms_resources():
    raw = cfn_yaml.loads(
        textwrap.dedent(
            """
            Globals:
              Function:
                Timeout: 7
                Runtime: python3.12
                CodeUri: .
                Environment: {Variables: {A: global, B: global}}
            Resources:
              Api: {Type: AWS::Serverless::HttpApi}
              Work: {Type: AWS::SQS::Queue}
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  Handler: pkg.mod.main
                  Environment: {Variables: {B: own}}
                  Events:
                    Catch: {Type: HttpApi, Properties: {ApiId: !Ref Api}}
                    Lower: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /x, Method: post}}
                    Q:
                      Type: SQS
                      Properties:
                        Queue: !GetAtt Work.Arn
                        BatchSize: 50
                        MaximumBatchingWindowInSeconds: 2
                        ScalingConfig: {MaximumConcurrency: 3}
                    Tick: {Type: Schedule, Properties: {Schedule: rate(5 minutes), Description: every 5 minutes}}
                    Nightly: {Type: Schedule, Properties: {Schedule: "cron(0 1 * * ? *)", Enabled: false}}
                    Later: {Type: ScheduleV2, Properties: {ScheduleExpression: rate(1 hour), Input: '{"k": 1}'}}
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
    assert sorted((e.path or "", e.method, e.api) for e in fn.http_events) == [
        ("", "ANY", "Api"),
        ("/x", "POST", "Api"),
    ]
    [q] = fn.sqs_events
    assert q.queue == "Work"
    assert {k: q.properties[k] for k in ("BatchSize", "MaximumBatchingWindowInSeconds", "ScalingConfig")} == {
        "BatchSize": 50,
        "MaximumBatchingWindowInSeconds": 2,
        "ScalingConfig": {"MaximumConcurrency": 3},
    }
    assert sorted((s.name, s.type, s.expression, s.state, s.input) for s in fn.schedule_events) == [
        ("FnLater", "AWS::Scheduler::Schedule", "rate(1 hour)", "ENABLED", '{"k": 1}'),
        ("FnNightly", "AWS::Events::Rule", "cron(0 1 * * ? *)", "DISABLED", None),
        ("FnTick", "AWS::Events::Rule", "rate(5 minutes)", "ENABLED", None),
    ]


def _function_with(event: str) -> str:
    return (
        "Fn: {Type: AWS::Serverless::Function, Properties: {CodeUri: ., Runtime: python3.12, Handler: a.b, "
        f"Events: {{E: {event}}}}}}}"
    )


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        # Resource types it neither emulates nor knows to skip.
        ("P: {Type: AWS::SSM::Parameter, Properties: {Type: String, Value: x}}", "type AWS::SSM::Parameter is not"),
        # Properties of emulated resources it would not honour, in CloudFormation's terms.
        ("Q: {Type: AWS::SQS::Queue, Properties: {FifoQueue: true}}", "AWS::SQS::Queue property FifoQueue is not"),
        (
            "T: {Type: AWS::DynamoDB::Table, Properties: {TableName: t, StreamSpecification: {}}}",
            "property StreamSpecification, TableName is not supported",
        ),
        (
            "R: {Type: AWS::Events::Rule, Properties: {EventPattern: {source: [x]}}}",
            "AWS::Events::Rule property EventPattern is not supported",
        ),
        (
            "L: {Type: AWS::Lambda::Function, Properties: {Handler: a.b, Code: {ZipFile: x}, Role: arn}}",
            "L.Code must be a local folder",
        ),
        (
            "A: {Type: AWS::Serverless::HttpApi, Properties: {Auth: {DefaultAuthorizer: J, Authorizers: {J: "
            "{IdentitySource: $request.header.Authorization, JwtConfiguration: {issuer: 'https://i.example'}}}}}}",
            "Body components is not supported",
        ),
        # SAM events become resources the runtime does not drive, or drives otherwise: refused by name.
        (_function_with("{Type: SNS, Properties: {Topic: arn:aws:sns:us-east-1:1:t}}"), "SNS delivery to a function"),
        (
            _function_with("{Type: Schedule, Properties: {Schedule: rate(1 hour), Input: '{}'}}"),
            "rule target property Input is not supported",
        ),
        (
            _function_with("{Type: SQS, Properties: {Queue: arn:aws:sqs:us-east-1:1:q}}"),
            "EventSourceArn must name an AWS::SQS::Queue of the template",
        ),
        (
            _function_with("{Type: SQS, Properties: {Queue: !GetAtt Q.Arn, FilterCriteria: {Filters: []}}}")
            + "\n  Q: {Type: AWS::SQS::Queue}",
            "AWS::Lambda::EventSourceMapping property FilterCriteria is not supported",
        ),
    ],
)
def test_what_the_runtime_does_not_support_is_refused_by_name(resources, message):
    with pytest.raises(TemplateError, match=re.escape(message)):
        parse_template(cfn_yaml.loads(f"Resources:\n  {resources}\n"), ROOT / "t.yaml")


def test_transforms_it_does_not_implement_and_what_the_translator_refuses_are_said_in_one_error():
    with pytest.raises(TemplateError, match=re.escape("Transform 'AWS::LanguageExtensions' is not supported")):
        parse_template(cfn_yaml.loads("Transform: AWS::LanguageExtensions\nResources: {}\n"), ROOT / "t.yaml")
    with pytest.raises(TemplateError, match=re.escape("the SAM transform refused the template")):
        parse_template(
            cfn_yaml.loads("Resources: {Fn: {Type: AWS::Serverless::Function, Properties: {Handler: a.b}}}\n"),
            ROOT / "t.yaml",
        )


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


def test_a_transform_is_cached_by_what_it_depends_on_and_a_refusal_never_is(tmp_path, monkeypatch):
    monkeypatch.setenv("CALLBRIDGE_CACHE_DIR", str(tmp_path))
    function = "Resources: {Fn: {Type: AWS::Serverless::Function, Properties: {Handler: a.b, Runtime: python3.12, CodeUri: %s, MemorySize: %d}}}\n"
    first = parse_template(cfn_yaml.loads(function % ("functions/a", 128)), ROOT / "t.yaml")
    assert len(list(tmp_path.glob("*.json"))) == 1
    # Read back from the cache: the same view of the template.
    assert parse_template(cfn_yaml.loads(function % ("functions/a", 128)), ROOT / "t.yaml") == first
    changed = parse_template(cfn_yaml.loads(function % ("functions/a", 256)), ROOT / "t.yaml")
    assert changed.resources["Fn"].properties["MemorySize"] == 256
    assert len(list(tmp_path.glob("*.json"))) == 2
    # A refused template leaves nothing behind, so it is refused again with its message.
    broken = "Resources: {Fn: {Type: AWS::Serverless::Function, Properties: {Handler: a.b}}}\n"
    for _ in range(2):
        with pytest.raises(TemplateError, match=re.escape("the SAM transform refused the template")):
            parse_template(cfn_yaml.loads(broken), ROOT / "t.yaml")
    assert len(list(tmp_path.glob("*.json"))) == 2
