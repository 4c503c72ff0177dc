"""The floor the benchmark compares every handler against: the least a real Lambda that answers from
DynamoDB can do. It imports boto3, creates its client once per cold start (on first use, kept in a
module global, as real code does) and makes one GetItem on the accounts table per invocation.

Deliberately without botocore Config, Powertools or any of our code: whatever our handlers cost
above this is ours to explain.

`gc_paused_handler` is the same floor with the one thing our AWS clients do differently
(callbridge/infra/aws.py): no garbage collection while the client loads its service model, and
what it made frozen afterwards. A handler that does only that much more than the floor is
measured against it, so that what the pause saves is not counted as our code's merit.

Warm, the floor can be a little slower than `contact`: the account's CONFIG item it reads is several
times the size of the contact item `contact` reads, and moto takes longer to serve it.
"""

from __future__ import annotations

import gc
import json
import os
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_client: DynamoDBClient | None = None
_KEY = {"pk": {"S": "ACCOUNT#demo"}, "sk": {"S": "CONFIG"}}


def _dynamodb() -> DynamoDBClient:
    global _client
    if _client is None:
        _client = boto3.client("dynamodb")
    return _client


def _dynamodb_gc_paused() -> DynamoDBClient:
    global _client
    if _client is None:
        enabled = gc.isenabled()
        gc.disable()
        try:
            _client = boto3.client("dynamodb")
        finally:
            gc.freeze()
            if enabled:
                gc.enable()
    return _client


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _answer(_dynamodb())


def gc_paused_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return _answer(_dynamodb_gc_paused())


def _answer(client: DynamoDBClient) -> dict[str, Any]:
    item = client.get_item(TableName=os.environ["ACCOUNTS_TABLE"], Key=_KEY).get("Item")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"found": item is not None}),
    }
