"""intrinsics.py and provision.py: template resources created in moto, function envs resolved."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from callbridge_local import cfn_yaml
from callbridge_local.intrinsics import IntrinsicError, PhysicalResource, Resolver, parameter_values
from callbridge_local.provision import AwsTarget, EnvironmentConflictError, merge_environments, provision
from callbridge_local.template import load_template, parse_template
from callbridge_local.testing import provisioned

from .conftest import TEMPLATE


def client(endpoint: str, service: str) -> Any:
    return AwsTarget(endpoint).client(service)


def resolver_for(yaml_text: str, **params: str) -> Resolver:
    template = parse_template(cfn_yaml.loads(textwrap.dedent(yaml_text)), Path("/tmp/t.yaml"))
    return Resolver(
        template, parameter_values(template, params), stack_name="st", region="eu-west-1", account_id="111122223333"
    )


INTRINSICS_TEMPLATE = """
Parameters:
  Env: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Size: {Type: Number, Default: 3, MinValue: 1, MaxValue: 5}
  Names: {Type: CommaDelimitedList, Default: "a, b"}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [!Condition NotProd, !Or [!Condition IsProd, !Equals [1, 1]]]
Mappings:
  Sizes: {eu-west-1: {Small: "10"}}
Resources:
  Q: {Type: AWS::SQS::Queue}
"""


def test_intrinsics_resolve_against_parameters_pseudo_parameters_and_resources():
    r = resolver_for(INTRINSICS_TEMPLATE)
    r.register("Q", PhysicalResource("https://q-url", {"Arn": "arn:q", "QueueName": "st-Q"}))
    assert r.resolve({"Ref": "Q"}) == "https://q-url"
    assert r.resolve({"Fn::GetAtt": ["Q", "Arn"]}) == "arn:q"
    assert r.resolve({"Ref": "Size"}) == "3"
    assert r.resolve({"Ref": "Names"}) == ["a", "b"]
    assert r.resolve({"Fn::Sub": "${AWS::StackName}/${AWS::Region}/${AWS::AccountId}/${Q.QueueName}/${!Raw}"}) == (
        "st/eu-west-1/111122223333/st-Q/${Raw}"
    )
    assert r.resolve({"Fn::Sub": ["${X}-${Env}", {"X": {"Ref": "AWS::Partition"}}]}) == "aws-dev"
    assert r.resolve({"Fn::Join": ["-", ["a", {"Ref": "Size"}, {"Ref": "AWS::URLSuffix"}]]}) == "a-3-amazonaws.com"
    assert r.resolve({"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]}) == "y"
    assert r.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "AWS::Region"}, "Small"]}) == "10"
    assert r.resolve({"Fn::If": ["IsProd", "big", "small"]}) == "small"
    assert r.resolve({"Fn::Base64": "hi"}) == "aGk="
    assert r.resolve({"Fn::GetAZs": ""})[0] == "eu-west-1a"
    assert r.condition("Both") is True
    assert r.resolve(
        {"A": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]}, "B": [1, {"Ref": "AWS::NoValue"}]}
    ) == {"B": [1]}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Ref": "Nope"}, "no such parameter or resource"),
        ({"Fn::GetAtt": ["Q", "Arn"]}, "has not been created"),
        ({"Fn::ImportValue": "x"}, "another stack"),
        ({"Fn::Cidr": ["10.0.0.0/16", 2, 8]}, "not supported"),
        ({"Fn::If": ["Unknown", 1, 2]}, "unknown condition"),
    ],
)
def test_unresolvable_intrinsics_explain_themselves(value, message):
    with pytest.raises(IntrinsicError, match=message):
        resolver_for(INTRINSICS_TEMPLATE).resolve(value)


def test_parameters_are_checked_like_cloudformation():
    template = parse_template(cfn_yaml.loads(INTRINSICS_TEMPLATE + "  R: {Type: AWS::SQS::Queue}\n"), Path("/t"))
    assert parameter_values(template, {"Env": "prod"})["Env"] == "prod"
    with pytest.raises(IntrinsicError, match="not one of"):
        parameter_values(template, {"Env": "staging"})
    with pytest.raises(IntrinsicError, match=r"outside 1\.\.5"):
        parameter_values(template, {"Size": "9"})
    with pytest.raises(IntrinsicError, match="unknown template parameter"):
        parameter_values(template, {"Typo": "1"})
    bare = parse_template(cfn_yaml.loads("Parameters: {Key: {Type: String}}\nResources: {}\n"), Path("/t"))
    with pytest.raises(IntrinsicError, match="--param Key="):
        parameter_values(bare)


def test_the_real_template_is_provisioned_in_moto(moto_endpoint, stack_name):
    stack = provision(load_template(TEMPLATE), AwsTarget(moto_endpoint), stack_name=stack_name)
    ddb = client(moto_endpoint, "dynamodb")
    calls = ddb.describe_table(TableName=f"{stack_name}-CallsTable")["Table"]
    assert calls["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert {(k["AttributeName"], k["KeyType"]) for k in calls["KeySchema"]} == {("pk", "HASH"), ("sk", "RANGE")}
    indexes = {i["IndexName"]: i for i in calls["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"ByAccount", "Deliveries"}
    gsi = indexes["ByAccount"]
    assert {(k["AttributeName"], k["KeyType"]) for k in gsi["KeySchema"]} == {("gsi1pk", "HASH"), ("gsi1sk", "RANGE")}
    assert gsi["Projection"]["ProjectionType"] == "ALL"
    deliveries = indexes["Deliveries"]  # sparse: only pending and parked deliveries carry dlv_pk
    assert [(k["AttributeName"], k["KeyType"]) for k in deliveries["KeySchema"]] == [
        ("dlv_pk", "HASH"),
        ("dlv_due", "RANGE"),
    ]
    assert deliveries["Projection"]["ProjectionType"] == "KEYS_ONLY"
    ttl = ddb.describe_time_to_live(TableName=f"{stack_name}-CallsTable")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    backups = ddb.describe_continuous_backups(TableName=f"{stack_name}-AccountsTable")
    assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == (
        "ENABLED"
    )
    contacts = ddb.describe_table(TableName=f"{stack_name}-ContactsTable")["Table"]
    assert {k["AttributeName"] for k in contacts["KeySchema"]} == {"account", "phone"}

    sqs = client(moto_endpoint, "sqs")
    queue_url = sqs.get_queue_url(QueueName=f"{stack_name}-CallSettleQueue")["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName=f"{stack_name}-CallSettleDLQ")["QueueUrl"]
    queue = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    dlq = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    assert json.loads(queue["RedrivePolicy"]) == {"deadLetterTargetArn": dlq["QueueArn"], "maxReceiveCount": 5}
    assert queue["VisibilityTimeout"] == "60"
    assert dlq["MessageRetentionPeriod"] == "1209600"

    env = stack.environment
    assert env["CALLS_TABLE"] == f"{stack_name}-CallsTable"
    assert env["ACCOUNTS_TABLE"] == f"{stack_name}-AccountsTable"
    assert env["SETTLE_QUEUE_URL"] == queue_url
    assert env["SSM_PREFIX"] == f"/callbridge/{stack_name}"
    assert env["MISSED_CALL_SETTLE_SECONDS"] == "30"
    assert env["POWERTOOLS_LOG_LEVEL"] == "INFO"
    assert set(stack.function_env) == set(load_template(TEMPLATE).functions)
    assert stack.queue_for_arn(dlq["QueueArn"]).ref == dlq_url
    assert len(stack.http_api_id({"Ref": "HttpApi"})) == 10


def test_provisioning_again_is_harmless_and_parameters_override_defaults(moto_endpoint, stack_name):
    first = provisioned(moto_endpoint, TEMPLATE, stack_name=stack_name)
    again = provisioned(moto_endpoint, TEMPLATE, params={"MissedCallSettleSeconds": "0"}, stack_name=stack_name)
    assert again["MISSED_CALL_SETTLE_SECONDS"] == "0"
    assert {k: v for k, v in again.items() if k != "MISSED_CALL_SETTLE_SECONDS"} == {
        k: v for k, v in first.items() if k != "MISSED_CALL_SETTLE_SECONDS"
    }


def test_buckets_parameters_and_explicit_names(moto_endpoint, stack_name, tmp_path):
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(
            """
            Resources:
              Uploads:
                Type: AWS::S3::Bucket
                Properties:
                  PublicAccessBlockConfiguration: {BlockPublicAcls: true, BlockPublicPolicy: true,
                                                   IgnorePublicAcls: true, RestrictPublicBuckets: true}
                  BucketEncryption:
                    ServerSideEncryptionConfiguration:
                      - ServerSideEncryptionByDefault: {SSEAlgorithm: AES256}
                  LifecycleConfiguration: {Rules: []}
              Setting:
                Type: AWS::SSM::Parameter
                Properties: {Type: String, Value: !GetAtt Uploads.Arn, Name: !Sub "/${AWS::StackName}/bucket"}
              Named:
                Type: AWS::SQS::Queue
                Properties: {QueueName: !Sub "${AWS::StackName}-explicit", DelaySeconds: 2}
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  Handler: m.h
                  Environment:
                    Variables:
                      BUCKET: !Ref Uploads
                      PARAM: !Ref Setting
                      QUEUE_NAME: !GetAtt Named.QueueName
                      FN_ARN: !GetAtt Fn.Arn
            """
        )
    )
    env = provisioned(moto_endpoint, tmp_path / "template.yaml", stack_name=stack_name)
    bucket = f"{stack_name}-uploads"
    assert env == {
        "BUCKET": bucket,
        "PARAM": f"/{stack_name}/bucket",
        "QUEUE_NAME": f"{stack_name}-explicit",
        "FN_ARN": f"arn:aws:lambda:us-east-1:123456789012:function:{stack_name}-Fn",
    }
    s3 = client(moto_endpoint, "s3")
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]["BlockPublicAcls"] is True
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    ssm = client(moto_endpoint, "ssm")
    assert ssm.get_parameter(Name=f"/{stack_name}/bucket")["Parameter"]["Value"] == f"arn:aws:s3:::{bucket}"


def test_functions_that_disagree_on_a_variable_cannot_share_the_process():
    assert merge_environments({"A": {"X": "1"}, "B": {"X": "1", "Y": "2"}}) == {"X": "1", "Y": "2"}
    with pytest.raises(EnvironmentConflictError, match="X is '1' in A but '2' in B"):
        merge_environments({"A": {"X": "1"}, "B": {"X": "2"}})
