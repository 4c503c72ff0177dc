"""Delivery items of the Calls table: pk = CALL#{account}#{call id}, sk = DLV#{crm name}.

    state        pending | delivered | rejected | failed
    dlv_pk       {account}#{crm}            while pending (the drain's partition)
                 REJECTED#{account}#{crm}    rejected by the CRM (or unsendable): the operator's list
                 FAILED#{account}#{crm}      gave up after DELIVERY_MAX_ATTEMPTS transient failures
                 (absent once delivered: the index holds nothing of the history)
    dlv_due      {due time ISO}#{call id}   the index sort key: due work comes out oldest first
    lease_until / lease_owner   set by a worker that took the delivery (conditional update)
    attempts, last_error, reason, flags, delivered_at, crm_answer

The Deliveries index (dlv_pk, dlv_due) is sparse: finding work costs what is pending, never what was
delivered. It is KEYS_ONLY; the worker reads the call items it actually sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from callbridge import aws, clock
from callbridge.dynamo import from_item, to_item
from callbridge.settings import get_settings
from callbridge.store.calls import call_pk

INDEX = "Deliveries"
PENDING, DELIVERED, REJECTED, FAILED = "pending", "delivered", "rejected", "failed"
PARKED = (REJECTED, FAILED)


def dlv_sk(crm: str) -> str:
    return f"DLV#{crm}"


def queue_key(account: str, crm: str) -> str:
    return f"{account}#{crm}"


def parked_key(state: str, account: str, crm: str) -> str:
    return f"{state.upper()}#{account}#{crm}"


def due_key(due: datetime, call_id: str) -> str:
    return f"{clock.iso(due)}#{call_id}"


def key(account: str, call_id: str, crm: str) -> dict[str, Any]:
    return {"pk": {"S": call_pk(account, call_id)}, "sk": {"S": dlv_sk(crm)}}


def call_id_of(pk: str, account: str) -> str:
    return pk[len(f"CALL#{account}#") :]


def _table() -> str:
    return get_settings().calls_table


def _conditional(request: dict[str, Any]) -> bool:
    try:
        aws.dynamodb().update_item(**request)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def create(account: str, call_id: str, crm: str, kind: str, mode: str, due: datetime, now: datetime) -> bool:
    """The delivery of a call to one CRM; False when it exists already (a repeated hand-off)."""
    item = to_item(
        {
            "pk": call_pk(account, call_id),
            "sk": dlv_sk(crm),
            "account": account,
            "call_id": call_id,
            "crm": crm,
            "crm_kind": kind,
            "mode": mode,
            "state": PENDING,
            "attempts": 0,
            "created_at": clock.iso(now),
            "dlv_pk": queue_key(account, crm),
            "dlv_due": due_key(due, call_id),
        }
    )
    try:
        aws.dynamodb().put_item(TableName=_table(), Item=item, ConditionExpression="attribute_not_exists(pk)")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return False
        raise
    return True


def due(account: str, crm: str, now: datetime, limit: int) -> Iterator[str]:
    """Call ids whose delivery to `crm` is pending and due, oldest due first (at most `limit`)."""
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "IndexName": INDEX,
        # '$' sorts right after '#': every key due at or before `now`, whatever its call id.
        "KeyConditionExpression": "dlv_pk = :q AND dlv_due < :until",
        "ExpressionAttributeValues": {":q": {"S": queue_key(account, crm)}, ":until": {"S": clock.iso(now) + "$"}},
        "Limit": min(limit, 1000),
    }
    left = limit
    while left > 0:
        response = aws.dynamodb().query(**kwargs)
        for item in response.get("Items", []):
            yield call_id_of(item["pk"]["S"], account)
            left -= 1
            if left <= 0:
                return
        if "LastEvaluatedKey" not in response:
            return
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        kwargs["Limit"] = min(left, 1000)


def claim(account: str, call_id: str, crm: str, owner: str, now: datetime, lease_s: int) -> dict[str, Any] | None:
    """Take a pending delivery for `lease_s` seconds; None when it is not pending or another
    worker holds a live lease. The item as it is after the claim otherwise (no extra read)."""
    request: dict[str, Any] = {
        "TableName": _table(),
        "Key": key(account, call_id, crm),
        "UpdateExpression": "SET lease_until = :until, lease_owner = :me",
        "ConditionExpression": "#s = :pending AND (attribute_not_exists(lease_until) OR lease_until < :now)",
        "ExpressionAttributeNames": {"#s": "state"},
        "ExpressionAttributeValues": {
            ":until": {"S": clock.iso(now + timedelta(seconds=lease_s))},
            ":me": {"S": owner},
            ":pending": {"S": PENDING},
            ":now": {"S": clock.iso(now)},
        },
        "ReturnValues": "ALL_NEW",
    }
    try:
        response = aws.dynamodb().update_item(**request)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            return None
        raise
    return from_item(response["Attributes"])


def mark_delivered(
    account: str, call_id: str, crm: str, now: datetime, answer: dict[str, Any], flags: list[str]
) -> None:
    """Delivered: out of the index for good. Unconditional: the CRM has the call, whoever says so."""
    values = to_item({":d": DELIVERED, ":at": clock.iso(now), ":answer": answer or {"ok": True}})
    expression = "SET #s = :d, delivered_at = :at, crm_answer = :answer"
    if flags:
        values[":flags"] = {"SS": sorted(flags)}
        expression += ", flags = :flags"
    aws.dynamodb().update_item(
        TableName=_table(),
        Key=key(account, call_id, crm),
        UpdateExpression=expression + " REMOVE dlv_pk, dlv_due, lease_until, lease_owner",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues=values,
    )


def park(
    state: str, account: str, call_id: str, crm: str, now: datetime, reason: str, attempts: int, flags: list[str]
) -> None:
    """Rejected or failed: moved to the operator's list (`list_parked`), never retried on its own."""
    values = to_item(
        {
            ":s": state,
            ":q": parked_key(state, account, crm),
            ":due": due_key(now, call_id),
            ":reason": reason[:1000] or state,
            ":at": clock.iso(now),
            ":n": attempts,
        }
    )
    expression = "SET #s = :s, dlv_pk = :q, dlv_due = :due, reason = :reason, parked_at = :at, attempts = :n"
    if flags:
        values[":flags"] = {"SS": sorted(flags)}
        expression += ", flags = :flags"
    aws.dynamodb().update_item(
        TableName=_table(),
        Key=key(account, call_id, crm),
        UpdateExpression=expression + " REMOVE lease_until, lease_owner",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues=values,
    )


def reschedule(
    account: str, call_id: str, crm: str, owner: str, due_at: datetime, *, attempts: int, error: str = ""
) -> bool:
    """Back to pending, due at `due_at` (a transient failure, or waiting for the recording). Only
    by the lease holder: a worker whose lease ran out must not undo another's result."""
    values = to_item({":due": due_key(due_at, call_id), ":n": attempts, ":me": owner, ":pending": PENDING})
    expression = "SET dlv_due = :due, attempts = :n"
    if error:
        values[":err"] = {"S": error[:1000]}
        expression += ", last_error = :err"
    return _conditional(
        {
            "TableName": _table(),
            "Key": key(account, call_id, crm),
            "UpdateExpression": expression + " REMOVE lease_until, lease_owner",
            "ConditionExpression": "lease_owner = :me AND #s = :pending",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": values,
        }
    )


def requeue(account: str, call_id: str, crm: str, now: datetime) -> bool:
    """An operator's retry of a parked delivery: pending again, due now, attempts from zero."""
    values = to_item(
        {
            ":q": queue_key(account, crm),
            ":due": due_key(now, call_id),
            ":p": PENDING,
            ":zero": 0,
            ":rejected": REJECTED,
            ":failed": FAILED,
        }
    )
    return _conditional(
        {
            "TableName": _table(),
            "Key": key(account, call_id, crm),
            "UpdateExpression": "SET #s = :p, dlv_pk = :q, dlv_due = :due, attempts = :zero "
            "REMOVE lease_until, lease_owner, parked_at",
            "ConditionExpression": "#s IN (:rejected, :failed)",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": values,
        }
    )


def list_parked(account: str, crm: str, state: str = FAILED, limit: int = 1000) -> list[dict[str, Any]]:
    """Parked deliveries of one CRM (the index is KEYS_ONLY: the items are read by key)."""
    keys: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "IndexName": INDEX,
        "KeyConditionExpression": "dlv_pk = :q",
        "ExpressionAttributeValues": {":q": {"S": parked_key(state, account, crm)}},
    }
    while len(keys) < limit:
        response = aws.dynamodb().query(**kwargs)
        keys.extend({"pk": i["pk"], "sk": i["sk"]} for i in response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            break
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
    return get_items(keys[:limit])


def get_items(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """BatchGetItem in pages of 100, retrying unprocessed keys."""
    found: list[dict[str, Any]] = []
    client = aws.dynamodb()
    for start in range(0, len(keys), 100):
        pending: dict[str, Any] = {_table(): {"Keys": keys[start : start + 100], "ConsistentRead": True}}
        while pending:
            response = client.batch_get_item(RequestItems=pending)
            found.extend(from_item(i) for i in response.get("Responses", {}).get(_table(), []))
            pending = response.get("UnprocessedKeys") or {}
    return found


def of_call(account: str, call_id: str) -> list[dict[str, Any]]:
    """Every delivery of one call."""
    response = aws.dynamodb().query(
        TableName=_table(),
        KeyConditionExpression="pk = :pk AND begins_with(sk, :dlv)",
        ExpressionAttributeValues={":pk": {"S": call_pk(account, call_id)}, ":dlv": {"S": "DLV#"}},
        ConsistentRead=True,
    )
    return [from_item(i) for i in response.get("Items", [])]
