"""What IAM checks for an AWS API call: the action(s) and resource ARN(s) of a botocore operation.

IAM does not authorize API operations, it authorizes actions on resources, as the Service
Authorization Reference of each service defines them (docs.aws.amazon.com/service-authorization,
"Actions, resources, and condition keys for <service>"). Mostly the action is the operation's name
and the resource is the one the call names, but not always, and the differences are what a local
check gets wrong if it guesses:

- DynamoDB: a transaction has no action of its own; each of its items needs the action of the
  single-item call (TransactWriteItems: PutItem, UpdateItem, DeleteItem, ConditionCheckItem;
  TransactGetItems: GetItem) on that item's table ("Using IAM with DynamoDB transactions").
  BatchGetItem/BatchWriteItem are actions, checked on every table of the request. A Query or Scan
  of an index is checked on the index ARN (`table/T/index/I`).
- SQS: the batch calls need the single-message actions (SendMessageBatch: sqs:SendMessage...); the
  resource is the queue's ARN, which is not its URL.
- SSM: parameter ARNs have no slash after `parameter` for a name that starts with one
  (`/a/b` -> `parameter/a/b`); GetParametersByPath is checked on the path.
- S3: object calls are checked on `arn:aws:s3:::bucket/key`, bucket calls on the bucket; several
  operations share an action (HeadObject: s3:GetObject; multipart upload parts: s3:PutObject;
  ListObjectsV2 and HeadBucket: s3:ListBucket).
- EventBridge Scheduler: schedules are `schedule/<group>/<name>`; creating or updating one also
  needs iam:PassRole on the role it names.

An operation with no resource (ListQueues, DescribeParameters, ListBuckets...) is checked on "*".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

PARTITION = "aws"


@dataclass(frozen=True)
class Request:
    """One action on one resource that IAM evaluates for a call."""

    action: str
    resource: str


@dataclass(frozen=True)
class CallSite:
    """Where a call goes: the values an ARN is built from."""

    region: str
    account_id: str

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{PARTITION}:{service}:{self.region if region else ''}:{self.account_id if account else ''}:{resource}"
        )


# -- DynamoDB ----------------------------------------------------------------------------------

_TRANSACT_WRITE_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def _table_arn(site: CallSite, table: str) -> str:
    # TableName may be the table's ARN (DynamoDB accepts both).
    return table if table.startswith("arn:") else site.arn("dynamodb", f"table/{table}")


def _dynamodb(site: CallSite, operation: str, params: Mapping[str, Any]) -> Iterator[Request]:
    if operation == "TransactWriteItems":
        for item in params.get("TransactItems") or ():
            for kind, body in item.items():
                yield Request(f"dynamodb:{_TRANSACT_WRITE_ACTIONS[kind]}", _table_arn(site, body["TableName"]))
    elif operation == "TransactGetItems":
        for item in params.get("TransactItems") or ():
            yield Request("dynamodb:GetItem", _table_arn(site, item["Get"]["TableName"]))
    elif operation in ("BatchGetItem", "BatchWriteItem"):
        for table in params.get("RequestItems") or {}:
            yield Request(f"dynamodb:{operation}", _table_arn(site, table))
    elif "TableName" in params:
        arn = _table_arn(site, params["TableName"])
        if operation in ("Query", "Scan") and params.get("IndexName"):
            arn = f"{arn}/index/{params['IndexName']}"
        yield Request(f"dynamodb:{operation}", arn)
    else:
        yield Request(f"dynamodb:{operation}", "*")


# -- SQS ---------------------------------------------------------------------------------------

_SQS_BATCH_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def queue_arn_from_url(site: CallSite, queue_url: str) -> str:
    """`https://sqs.<region>.amazonaws.com/<account>/<name>` (or the emulator's
    `http://127.0.0.1:<port>/<account>/<name>`) -> `arn:aws:sqs:<region>:<account>:<name>`."""
    parts = [p for p in urlparse(queue_url).path.split("/") if p]
    if len(parts) != 2:
        raise ValueError(f"not a queue URL: {queue_url!r}")
    account, name = parts
    return f"arn:{PARTITION}:sqs:{site.region}:{account}:{name}"


def _sqs(site: CallSite, operation: str, params: Mapping[str, Any]) -> Iterator[Request]:
    action = f"sqs:{_SQS_BATCH_ACTIONS.get(operation, operation)}"
    if "QueueUrl" in params:
        yield Request(action, queue_arn_from_url(site, params["QueueUrl"]))
    elif "QueueName" in params:  # GetQueueUrl, CreateQueue
        account = params.get("QueueOwnerAWSAccountId") or site.account_id
        yield Request(action, f"arn:{PARTITION}:sqs:{site.region}:{account}:{params['QueueName']}")
    else:
        yield Request(action, "*")


# -- SSM ---------------------------------------------------------------------------------------


def parameter_arn(site: CallSite, name: str) -> str:
    """A parameter's ARN from its name (`/a/b`, `a`, `a:3` with a version, or already an ARN)."""
    if name.startswith("arn:"):
        return name
    # GetParameter(s) accept `name:version` and `name:label`; the ARN is the parameter's.
    base = name.split(":", 1)[0]
    return site.arn("ssm", f"parameter/{base.lstrip('/')}")


def _ssm(site: CallSite, operation: str, params: Mapping[str, Any]) -> Iterator[Request]:
    action = f"ssm:{operation}"
    if "Name" in params:
        yield Request(action, parameter_arn(site, params["Name"]))
    elif "Names" in params:  # GetParameters, DeleteParameters
        for name in params["Names"]:
            yield Request(action, parameter_arn(site, name))
    elif "Path" in params:  # GetParametersByPath
        yield Request(action, parameter_arn(site, params["Path"]))
    else:
        yield Request(action, "*")


# -- S3 ----------------------------------------------------------------------------------------

# Operations whose action is not s3:<Operation>, and whether they act on the bucket or an object.
_S3_OBJECT_ACTIONS = {
    "HeadObject": "GetObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "ListParts": "ListMultipartUploadParts",
    "GetObjectAttributes": "GetObjectAttributes",
}
_S3_BUCKET_ACTIONS = {
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "ListMultipartUploads": "ListBucketMultipartUploads",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "ListBuckets": "ListAllMyBuckets",
}


def _s3_arn(bucket: str, key: str | None = None) -> str:
    return f"arn:{PARTITION}:s3:::{bucket}" + ("" if key is None else f"/{key}")


def _s3(site: CallSite, operation: str, params: Mapping[str, Any]) -> Iterator[Request]:
    bucket = params.get("Bucket")
    if operation == "DeleteObjects" and bucket:
        for item in (params.get("Delete") or {}).get("Objects") or ():
            yield Request("s3:DeleteObject", _s3_arn(bucket, item["Key"]))
        return
    if operation == "CopyObject" and bucket:
        source = params.get("CopySource")
        if isinstance(source, Mapping):
            yield Request("s3:GetObject", _s3_arn(source["Bucket"], source["Key"]))
        elif isinstance(source, str):
            yield Request("s3:GetObject", f"arn:{PARTITION}:s3:::{source.lstrip('/').split('?', 1)[0]}")
        yield Request("s3:PutObject", _s3_arn(bucket, params["Key"]))
        return
    if "Key" in params and bucket:
        action = _S3_OBJECT_ACTIONS.get(operation, operation)
        if action == "GetObject" and params.get("VersionId"):
            action = "GetObjectVersion"
        yield Request(f"s3:{action}", _s3_arn(bucket, params["Key"]))
    elif bucket:
        yield Request(f"s3:{_S3_BUCKET_ACTIONS.get(operation, operation)}", _s3_arn(bucket))
    else:
        yield Request(f"s3:{_S3_BUCKET_ACTIONS.get(operation, operation)}", "*")


# -- EventBridge Scheduler ---------------------------------------------------------------------


def _scheduler(site: CallSite, operation: str, params: Mapping[str, Any]) -> Iterator[Request]:
    action = f"scheduler:{operation}"
    if operation.endswith("ScheduleGroup") and "Name" in params:
        yield Request(action, site.arn("scheduler", f"schedule-group/{params['Name']}"))
    elif "Name" in params:
        group = params.get("GroupName") or "default"
        yield Request(action, site.arn("scheduler", f"schedule/{group}/{params['Name']}"))
        role = (params.get("Target") or {}).get("RoleArn")
        if operation in ("CreateSchedule", "UpdateSchedule") and role:
            yield Request("iam:PassRole", role)
    elif operation == "ListSchedules" and params.get("GroupName"):
        yield Request(action, site.arn("scheduler", f"schedule-group/{params['GroupName']}"))
    else:
        yield Request(action, "*")


_SERVICES: dict[str, Callable[[CallSite, str, Mapping[str, Any]], Iterator[Request]]] = {
    "dynamodb": _dynamodb,
    "sqs": _sqs,
    "ssm": _ssm,
    "s3": _s3,
    "scheduler": _scheduler,
}


def requests_for(service: str, operation: str, params: Mapping[str, Any], site: CallSite) -> list[Request]:
    """The (action, resource) pairs IAM evaluates for ``operation`` of ``service`` (botocore's
    service name) with ``params``. Services not listed are checked as `<service>:<Operation>` on
    "*": what the functions call is listed, the rest (sts:GetCallerIdentity...) names no resource."""
    mapper = _SERVICES.get(service)
    if mapper is None:
        return [Request(f"{service}:{operation}", "*")]
    return list(mapper(site, operation, params))
