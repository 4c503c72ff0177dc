"""The IAM action and resource ARN of each botocore operation the functions make, as the Service
Authorization Reference defines them (tools/callbridge_local/iam_actions.py)."""

from __future__ import annotations

from typing import Any

import pytest

from callbridge_local.iam_actions import CallSite, Request, queue_arn_from_url, requests_for

SITE = CallSite("eu-west-1", "111122223333")
TABLE = "arn:aws:dynamodb:eu-west-1:111122223333:table/"


def pairs(service: str, operation: str, **params: Any) -> list[tuple[str, str]]:
    return [(r.action, r.resource) for r in requests_for(service, operation, params, SITE)]


def test_dynamodb_single_item_calls_are_checked_on_the_table() -> None:
    assert pairs("dynamodb", "PutItem", TableName="Calls", Item={}) == [("dynamodb:PutItem", TABLE + "Calls")]
    assert pairs("dynamodb", "GetItem", TableName=TABLE + "Calls", Key={}) == [("dynamodb:GetItem", TABLE + "Calls")]


def test_dynamodb_index_queries_are_checked_on_the_index() -> None:
    assert pairs("dynamodb", "Query", TableName="Calls", IndexName="byPhone") == [
        ("dynamodb:Query", TABLE + "Calls/index/byPhone")
    ]
    assert pairs("dynamodb", "Scan", TableName="Calls") == [("dynamodb:Scan", TABLE + "Calls")]


def test_dynamodb_transactions_need_the_single_item_actions_per_table() -> None:
    items = [
        {"Put": {"TableName": "Calls", "Item": {}}},
        {"Update": {"TableName": "Calls", "Key": {}}},
        {"Delete": {"TableName": "Cache", "Key": {}}},
        {"ConditionCheck": {"TableName": "Accounts", "Key": {}, "ConditionExpression": "x"}},
    ]
    assert pairs("dynamodb", "TransactWriteItems", TransactItems=items) == [
        ("dynamodb:PutItem", TABLE + "Calls"),
        ("dynamodb:UpdateItem", TABLE + "Calls"),
        ("dynamodb:DeleteItem", TABLE + "Cache"),
        ("dynamodb:ConditionCheckItem", TABLE + "Accounts"),
    ]
    assert pairs("dynamodb", "TransactGetItems", TransactItems=[{"Get": {"TableName": "Calls", "Key": {}}}]) == [
        ("dynamodb:GetItem", TABLE + "Calls")
    ]


def test_dynamodb_batches_are_checked_on_every_table() -> None:
    assert pairs("dynamodb", "BatchWriteItem", RequestItems={"Calls": [], "Cache": []}) == [
        ("dynamodb:BatchWriteItem", TABLE + "Calls"),
        ("dynamodb:BatchWriteItem", TABLE + "Cache"),
    ]
    assert pairs("dynamodb", "BatchGetItem", RequestItems={"Accounts": {}}) == [
        ("dynamodb:BatchGetItem", TABLE + "Accounts")
    ]
    assert pairs("dynamodb", "ListTables") == [("dynamodb:ListTables", "*")]


def test_sqs_resources_are_queue_arns_and_batches_need_the_single_actions() -> None:
    url = "http://127.0.0.1:5000/111122223333/stack-DeliveryQueue"
    arn = "arn:aws:sqs:eu-west-1:111122223333:stack-DeliveryQueue"
    assert queue_arn_from_url(SITE, "https://sqs.eu-west-1.amazonaws.com/111122223333/stack-DeliveryQueue") == arn
    assert pairs("sqs", "SendMessage", QueueUrl=url, MessageBody="x") == [("sqs:SendMessage", arn)]
    assert pairs("sqs", "SendMessageBatch", QueueUrl=url, Entries=[]) == [("sqs:SendMessage", arn)]
    assert pairs("sqs", "DeleteMessageBatch", QueueUrl=url, Entries=[]) == [("sqs:DeleteMessage", arn)]
    assert pairs("sqs", "ChangeMessageVisibilityBatch", QueueUrl=url, Entries=[]) == [
        ("sqs:ChangeMessageVisibility", arn)
    ]
    assert pairs("sqs", "GetQueueUrl", QueueName="stack-DeliveryQueue") == [("sqs:GetQueueUrl", arn)]
    assert pairs("sqs", "ListQueues") == [("sqs:ListQueues", "*")]
    with pytest.raises(ValueError, match="not a queue URL"):
        queue_arn_from_url(SITE, "http://127.0.0.1:5000/")


def test_ssm_parameter_arns_drop_the_leading_slash_and_the_version() -> None:
    arn = "arn:aws:ssm:eu-west-1:111122223333:parameter/callbridge/s/accounts/demo/pbx"
    assert pairs("ssm", "GetParameter", Name="/callbridge/s/accounts/demo/pbx", WithDecryption=True) == [
        ("ssm:GetParameter", arn)
    ]
    assert pairs("ssm", "GetParameter", Name="/callbridge/s/accounts/demo/pbx:3") == [("ssm:GetParameter", arn)]
    assert pairs("ssm", "PutParameter", Name=arn, Value="v") == [("ssm:PutParameter", arn)]
    assert pairs("ssm", "GetParameters", Names=["/a", "b"]) == [
        ("ssm:GetParameters", "arn:aws:ssm:eu-west-1:111122223333:parameter/a"),
        ("ssm:GetParameters", "arn:aws:ssm:eu-west-1:111122223333:parameter/b"),
    ]
    assert pairs("ssm", "GetParametersByPath", Path="/callbridge/s/") == [
        ("ssm:GetParametersByPath", "arn:aws:ssm:eu-west-1:111122223333:parameter/callbridge/s/")
    ]
    assert pairs("ssm", "DescribeParameters") == [("ssm:DescribeParameters", "*")]


def test_s3_object_and_bucket_actions() -> None:
    obj = "arn:aws:s3:::recs/demo/1.mp3"
    assert pairs("s3", "PutObject", Bucket="recs", Key="demo/1.mp3", Body=b"") == [("s3:PutObject", obj)]
    assert pairs("s3", "HeadObject", Bucket="recs", Key="demo/1.mp3") == [("s3:GetObject", obj)]
    assert pairs("s3", "GetObject", Bucket="recs", Key="demo/1.mp3", VersionId="v1") == [("s3:GetObjectVersion", obj)]
    for operation in ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload"):
        assert pairs("s3", operation, Bucket="recs", Key="demo/1.mp3") == [("s3:PutObject", obj)]
    assert pairs("s3", "AbortMultipartUpload", Bucket="recs", Key="demo/1.mp3", UploadId="u") == [
        ("s3:AbortMultipartUpload", obj)
    ]
    assert pairs("s3", "ListObjectsV2", Bucket="recs") == [("s3:ListBucket", "arn:aws:s3:::recs")]
    assert pairs("s3", "GetBucketLocation", Bucket="recs") == [("s3:GetBucketLocation", "arn:aws:s3:::recs")]
    assert pairs("s3", "DeleteObjects", Bucket="recs", Delete={"Objects": [{"Key": "a"}, {"Key": "b"}]}) == [
        ("s3:DeleteObject", "arn:aws:s3:::recs/a"),
        ("s3:DeleteObject", "arn:aws:s3:::recs/b"),
    ]
    assert pairs("s3", "CopyObject", Bucket="recs", Key="b", CopySource={"Bucket": "old", "Key": "a"}) == [
        ("s3:GetObject", "arn:aws:s3:::old/a"),
        ("s3:PutObject", "arn:aws:s3:::recs/b"),
    ]
    assert pairs("s3", "ListBuckets") == [("s3:ListAllMyBuckets", "*")]


def test_scheduler_schedules_and_the_role_they_pass() -> None:
    role = "arn:aws:iam::111122223333:role/scheduler"
    assert pairs("scheduler", "CreateSchedule", Name="n", Target={"RoleArn": role, "Arn": "x"}) == [
        ("scheduler:CreateSchedule", "arn:aws:scheduler:eu-west-1:111122223333:schedule/default/n"),
        ("iam:PassRole", role),
    ]
    assert pairs("scheduler", "DeleteSchedule", Name="n", GroupName="g") == [
        ("scheduler:DeleteSchedule", "arn:aws:scheduler:eu-west-1:111122223333:schedule/g/n")
    ]
    assert pairs("scheduler", "CreateScheduleGroup", Name="g") == [
        ("scheduler:CreateScheduleGroup", "arn:aws:scheduler:eu-west-1:111122223333:schedule-group/g")
    ]


def test_other_services_are_checked_on_any_resource() -> None:
    assert requests_for("sts", "GetCallerIdentity", {}, SITE) == [Request("sts:GetCallerIdentity", "*")]
