"""intrinsics.py and provision.py: template resources created in moto, function envs resolved."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from callbridge_local import cfn_yaml
from callbridge_local.intrinsics import IntrinsicError, PhysicalResource, Resolver, parameter_values
from callbridge_local.provision import (
    AwsTarget,
    EnvironmentConflictError,
    ProvisionError,
    merge_environments,
    provision,
)
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
  Subnets: {Type: "List<AWS::EC2::Subnet::Id>"}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  NotProd: !Not [!Condition IsProd]
  Bad: !Equals [!Select [0, !Split [",", "a,b"]], "a"]
Resources:
  Q: {Type: AWS::SQS::Queue}
  Topic: {Type: AWS::SNS::Topic}
  ProdQueue: {Type: AWS::SQS::Queue, Condition: IsProd}
"""


def test_intrinsics_resolve_against_parameters_pseudo_parameters_and_resources():
    r = resolver_for(INTRINSICS_TEMPLATE)
    r.register("Q", PhysicalResource("https://q-url", {"Arn": "arn:q", "QueueName": "st-Q"}))
    assert r.resolve({"Ref": "Q"}) == "https://q-url"
    assert r.resolve({"Fn::GetAtt": ["Q", "Arn"]}) == "arn:q"
    assert r.resolve({"Ref": "Size"}) == "3"
    assert r.resolve({"Fn::Sub": "${AWS::StackName}/${AWS::Region}/${AWS::URLSuffix}/${Q}/${Q.QueueName}/${!Raw}"}) == (
        "st/eu-west-1/amazonaws.com/https://q-url/st-Q/${Raw}"
    )
    assert r.resolve({"Fn::Sub": "${Env}-${Size}"}) == "dev-3"
    # What the transform's own output uses (the HTTP API's integrations, role policies).
    assert (
        r.resolve({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}) == "arn:aws:iam::111122223333:root"
    )
    assert r.resolve({"Fn::If": ["IsProd", "big", "small"]}) == "small"
    assert r.condition("NotProd") is True
    assert r.resolve({"Condition": "IsProd"}) is False
    assert r.resolve(
        {"A": {"Fn::If": ["IsProd", "x", {"Ref": "AWS::NoValue"}]}, "B": [1, {"Ref": "AWS::NoValue"}]}
    ) == {"B": [1]}
    # Only the branch taken is resolved: what the other holds does not matter.
    assert r.resolve({"Fn::If": ["NotProd", "ok", {"Fn::Cidr": ["10.0.0.0/16", 2, 8]}]}) == "ok"
    # A parameter of a type the runtime does not support (and without a Default) stops nothing
    # until something the runtime reads refers to it.
    assert "Subnets" in r.parameters


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Ref": "Nope"}, "Ref Nope: no such parameter or resource"),
        ({"Fn::GetAtt": ["Q", "Arn"]}, "Q has not been created"),
        ({"Ref": "Topic"}, "Topic is an AWS::SNS::Topic, which the local runtime does not emulate"),
        ({"Ref": "ProdQueue"}, "ProdQueue is not created: its condition IsProd is false"),
        (
            {"Ref": "AWS::NotificationARNs"},
            "Ref AWS::NotificationARNs: pseudo parameter not supported by the local runtime",
        ),
        ({"Fn::Sub": "arn:aws:sns:${AWS::NotificationARNs}"}, "AWS::NotificationARNs: pseudo parameter not supported"),
        ({"Ref": "Subnets"}, "parameters of type List<AWS::EC2::Subnet::Id> are not supported by the local runtime"),
        ({"Fn::ImportValue": "x"}, "Fn::ImportValue is not supported by the local runtime"),
        ({"Fn::Split": ["-", "a-b"]}, "Fn::Split is not supported by the local runtime"),
        ({"Fn::Base64": "x"}, "Fn::Base64 is not supported by the local runtime"),
        ({"Fn::Sub": ["${A}", {"A": "a"}]}, "Fn::Sub is supported by the local runtime only in its string form"),
        ({"Fn::If": ["Bad", 1, 2]}, "condition Bad: Fn::Split is not supported by the local runtime"),
        ({"Fn::If": ["Unknown", 1, 2]}, "unknown condition"),
    ],
)
def test_unsupported_or_unresolvable_intrinsics_are_refused_by_name(value, message):
    with pytest.raises(IntrinsicError, match=re.escape(message)):
        resolver_for(INTRINSICS_TEMPLATE).resolve(value)


def test_parameters_are_checked_like_cloudformation():
    template = parse_template(cfn_yaml.loads(INTRINSICS_TEMPLATE), Path("/t"))
    assert parameter_values(template, {"Env": "prod", "Subnets": "s"})["Env"] == "prod"
    with pytest.raises(IntrinsicError, match="not one of"):
        parameter_values(template, {"Env": "staging"})
    with pytest.raises(IntrinsicError, match=r"outside 1\.\.5"):
        parameter_values(template, {"Size": "9"})
    with pytest.raises(IntrinsicError, match="must be a number"):
        parameter_values(template, {"Size": "three"})
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
    assert stack.physical_name("CallSettleDLQ") == dlq_url
    assert len(stack.api_id("HttpApi")) == 10
    # The role each function runs as: its transformed Role, the template's AWS::IAM::Role.
    [health] = [f for f in stack.functions if f.logical_id == "HealthFunction"]
    assert stack.role_arn(health) == f"arn:aws:iam::123456789012:role/{stack_name}-HealthFunctionRole"


def test_provisioning_again_is_harmless_and_parameters_override_defaults(moto_endpoint, stack_name):
    first = provisioned(moto_endpoint, TEMPLATE, stack_name=stack_name)
    again = provisioned(moto_endpoint, TEMPLATE, params={"MissedCallSettleSeconds": "0"}, stack_name=stack_name)
    assert again["MISSED_CALL_SETTLE_SECONDS"] == "0"
    assert {k: v for k, v in again.items() if k != "MISSED_CALL_SETTLE_SECONDS"} == {
        k: v for k, v in first.items() if k != "MISSED_CALL_SETTLE_SECONDS"
    }


def test_buckets_queues_and_what_functions_read_of_them(moto_endpoint, stack_name, tmp_path):
    (tmp_path / "template.yaml").write_text(
        textwrap.dedent(
            """
            Parameters:
              Days: {Type: Number, Default: 7}
            Resources:
              Uploads:
                Type: AWS::S3::Bucket
                Properties:
                  # Accepted and not applied: an intrinsic in them is never resolved.
                  LifecycleConfiguration: {Rules: [{Status: Enabled, ExpirationInDays: !Ref AWS::AccountId}]}
              Work:
                Type: AWS::SQS::Queue
                Properties: {VisibilityTimeout: !Ref Days, SqsManagedSseEnabled: true}
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: src/
                  Runtime: python3.12
                  Handler: m.h
                  Policies: [{S3ReadPolicy: {BucketName: !Sub "${AWS::AccountId}-${Uploads}"}}]
                  Environment:
                    Variables:
                      BUCKET: !Ref Uploads
                      BUCKET_ARN: !GetAtt Uploads.Arn
                      QUEUE_NAME: !GetAtt Work.QueueName
                      FN_ARN: !GetAtt Fn.Arn
            """
        )
    )
    env = provisioned(moto_endpoint, tmp_path / "template.yaml", stack_name=stack_name)
    bucket = f"{stack_name}-uploads"
    assert env == {
        "BUCKET": bucket,
        "BUCKET_ARN": f"arn:aws:s3:::{bucket}",
        "QUEUE_NAME": f"{stack_name}-Work",
        "FN_ARN": f"arn:aws:lambda:us-east-1:123456789012:function:{stack_name}-Fn",
    }
    assert bucket in {b["Name"] for b in client(moto_endpoint, "s3").list_buckets()["Buckets"]}
    sqs = client(moto_endpoint, "sqs")
    url = sqs.get_queue_url(QueueName=f"{stack_name}-Work")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"] == {
        "VisibilityTimeout": "7"
    }


NETWORKED_TEMPLATE = """
Parameters:
  EnableStaticIp: {Type: String, Default: "false", AllowedValues: ["true", "false"]}
Conditions:
  UseStaticIp: !Equals [!Ref EnableStaticIp, "true"]
Globals:
  Function:
    VpcConfig: !If
      - UseStaticIp
      - SubnetIds: [!Ref PrivateSubnet]
        SecurityGroupIds: [!GetAtt Vpc.DefaultSecurityGroup]
      - !Ref AWS::NoValue
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Condition: UseStaticIp
    Properties: {CidrBlock: 10.0.0.0/16}
  PrivateSubnet:
    Type: AWS::EC2::Subnet
    Condition: UseStaticIp
    Properties:
      VpcId: !Ref Vpc
      AvailabilityZone: !Select [0, !GetAZs ""]
      CidrBlock: !Select [0, !Cidr [!GetAtt Vpc.CidrBlock, 2, 8]]
  NatIp:
    Type: AWS::EC2::EIP
    Condition: UseStaticIp
    Properties: {Domain: vpc}
  Work: {Type: AWS::SQS::Queue}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Runtime: python3.12
      Handler: m.h
      Environment:
        Variables:
          QUEUE_URL: !Ref Work
          STATIC_IP: !If [UseStaticIp, !Ref NatIp, ""]
"""


def test_networking_behind_a_condition_is_skipped(moto_endpoint, stack_name, tmp_path):
    (tmp_path / "template.yaml").write_text(NETWORKED_TEMPLATE)
    env = provisioned(moto_endpoint, tmp_path / "template.yaml", stack_name=stack_name)
    assert env["STATIC_IP"] == ""
    assert env["QUEUE_URL"].endswith(f"/{stack_name}-Work")
    # Turned on, the function would need an address the runtime cannot give: refused, by name.
    with pytest.raises(ProvisionError, match=re.escape("NatIp is an AWS::EC2::EIP, which the local runtime does not")):
        provisioned(moto_endpoint, tmp_path / "template.yaml", {"EnableStaticIp": "true"}, stack_name=stack_name)


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            "Work: {Type: AWS::SQS::Queue, Properties: {VisibilityTimeout: !Base64 '30'}}",
            "Work (AWS::SQS::Queue): Fn::Base64 is not supported by the local runtime",
        ),
        (
            "Fn: {Type: AWS::Serverless::Function, Properties: {CodeUri: src/, Runtime: python3.12, Handler: m.h, "
            "Environment: {Variables: {ID: !Sub '${AWS::NotificationARNs}'}}}}",
            "Fn: environment variable ID: Ref AWS::NotificationARNs: pseudo parameter not supported",
        ),
    ],
)
def test_an_unsupported_intrinsic_where_the_runtime_reads_is_refused_naming_the_place(
    moto_endpoint, stack_name, resources, message
):
    template = parse_template(cfn_yaml.loads(f"Resources:\n  {resources}\n"), Path("/t.yaml"))
    with pytest.raises(ProvisionError, match=re.escape(message)):
        provision(template, AwsTarget(moto_endpoint), stack_name=stack_name)


def test_functions_that_disagree_on_a_variable_cannot_share_the_process():
    assert merge_environments({"A": {"X": "1"}, "B": {"X": "1", "Y": "2"}}) == {"X": "1", "Y": "2"}
    with pytest.raises(EnvironmentConflictError, match="X is '1' in A but '2' in B"):
        merge_environments({"A": {"X": "1"}, "B": {"X": "2"}})
