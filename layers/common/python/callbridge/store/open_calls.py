"""Calls a source began and may never finish (Calls table, `OPEN#{account}#{source}`, sorted by
when they began): telediscount's `incoming` webhook and its click-to-call `outcome` name a call id
whose `finished` webhook may be lost. The reconciliation asks the PBX about exactly these calls
(`get_calls?api_call_id=…`) instead of reading its whole call list every run, and forgets an entry
once its call is final. Entries expire by themselves (`expires_at`) after the window they matter in.
The same partition keeps when the source's whole call list was last read (sk `SWEPT`, after every
time stamp): the Calls table, because the reconciliation may not write the Accounts table.

The pseudo-source `RINGING` holds every call a live event made ring, under its first ring: the
ringing sweep (features/ringing_sweep.py) reads the entries older than the maximum ringing age and
settles the calls whose stop never came, instead of scanning the Calls table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import query_items, to_item
from callbridge.store.keys import open_pk

_BATCH_WRITE = 25
SWEPT = "SWEPT"
RINGING = "ringing"  # not a PBX kind: the calls a live event made ring (core/record.py record_live)
EARLIEST = "0"  # sorts before every UTC ISO time stamp


@dataclass(frozen=True, slots=True)
class OpenCall:
    call_id: str
    since: str  # UTC ISO: when the source began it


def _sk(since: str, call_id: str) -> str:
    return f"{since}#{call_id}"


def mark_open(account: str, source: str, call_id: str, since: str, expires_at: int) -> None:
    """Remember that `call_id` began at `since` (a repeat overwrites the same entry)."""
    item = {"pk": open_pk(account, source), "sk": _sk(since, call_id), "call_id": call_id, "expires_at": expires_at}
    aws.dynamodb().put_item(TableName=get_settings().calls_table, Item=to_item(item))


def open_between(account: str, source: str, start: str, end: str) -> list[OpenCall]:
    """The calls of `source` that began in [start, end] (UTC ISO) and are not forgotten yet."""
    found: list[OpenCall] = []
    kwargs: dict[str, Any] = {
        "TableName": get_settings().calls_table,
        "KeyConditionExpression": "pk = :pk AND sk BETWEEN :start AND :end",
        "ExpressionAttributeValues": {
            ":pk": {"S": open_pk(account, source)},
            ":start": {"S": start},
            ":end": {"S": end + "#\uffff"},
        },
        "ConsistentRead": True,
    }
    for item in query_items(kwargs):
        since, _, call_id = item["sk"]["S"].partition("#")
        found.append(OpenCall(call_id, since))
    return found


def forget(account: str, source: str, entries: Iterable[OpenCall]) -> None:
    """Drop entries whose call is final: nothing more to ask the PBX about them."""
    table = get_settings().calls_table
    pk = open_pk(account, source)
    deletes = [{"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": _sk(e.since, e.call_id)}}}} for e in entries]
    for start in range(0, len(deletes), _BATCH_WRITE):
        request: dict[str, Any] = {table: deletes[start : start + _BATCH_WRITE]}
        while request:
            request = aws.dynamodb().batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def last_sweep(account: str, source: str) -> str | None:
    """When the whole call list of `source` was last read (UTC ISO), None before the first time."""
    key = {"pk": {"S": open_pk(account, source)}, "sk": {"S": SWEPT}}
    item = aws.dynamodb().get_item(TableName=get_settings().calls_table, Key=key, ConsistentRead=True).get("Item")
    return item["at"]["S"] if item and "at" in item else None


def mark_sweep(account: str, source: str, at: str) -> None:
    item = {"pk": open_pk(account, source), "sk": SWEPT, "at": at}
    aws.dynamodb().put_item(TableName=get_settings().calls_table, Item=to_item(item))
