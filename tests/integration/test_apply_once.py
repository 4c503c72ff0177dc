"""One source record applied once (store/calls.py apply_once) against DynamoDB (moto over HTTP): one
conditional write of the call item decides, its marker recorded in that write; the timeline's EVT
item follows, and a retry after that second write was lost writes it. Call items written before
markers lived on the call (their markers are EVT items only) are decided by their EVT items. Every
call item and timeline item carries the Calls table's TTL."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store import calls
from callbridge.store.dynamo import to_item
from callbridge.store.keys import call_key
from callbridge.store.updates import Update

ACCOUNT = "demo"


@dataclass(frozen=True)
class Marker:
    cmd: str
    type: str
    user: str


RING = Marker("event", "INCOMING", "101")


def _increment() -> Update:
    return Update().set(account=ACCOUNT).increment("applied")


def _items(call_id: str) -> dict[str, dict[str, Any]]:
    response = aws.dynamodb().query(
        TableName=get_settings().calls_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"CALL#{ACCOUNT}#{call_id}"}},
        ConsistentRead=True,
    )
    return {i["sk"]["S"]: i for i in response["Items"]}


@pytest.fixture
def lost_timeline_writes(cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The timeline's put fails as if the function died between its two writes, while the list has
    entries (the call ids still to fail)."""
    failing: list[str] = []
    keep = calls._keep_on_timeline

    def lost(account: str, call_id: str, *args: Any) -> None:
        if call_id in failing:
            failing.remove(call_id)
            raise TimeoutError("the function ended before its timeline write")
        keep(account, call_id, *args)

    monkeypatch.setattr(calls, "_keep_on_timeline", lost)
    yield failing


def test_a_record_is_applied_once_with_its_marker_on_the_call_and_its_timeline_item(cloud: dict[str, str]) -> None:
    assert calls.apply_once(ACCOUNT, "c1", RING, "2026-12-07T10:00:00Z", {"callid": "c1"}, _increment())
    assert not calls.apply_once(ACCOUNT, "c1", RING, "2026-12-07T10:00:05Z", {"callid": "c1"}, _increment())
    items = _items("c1")
    assert items["CALL"]["applied"] == {"N": "1"}
    assert items["CALL"]["marks"] == {"SS": [calls.mark_of("EVT#event#INCOMING#101")]}
    assert items["EVT#event#INCOMING#101"]["received_at"] == {"S": "2026-12-07T10:00:00Z"}  # the first receipt
    retention = get_settings().call_retention_s
    for item in items.values():
        assert abs(int(item["expires_at"]["N"]) - (time.time() + retention)) < 60


def test_twins_racing_apply_one(cloud: dict[str, str]) -> None:
    def apply(_: int) -> bool:
        return calls.apply_once(ACCOUNT, "c2", RING, "2026-12-07T10:00:00Z", {"callid": "c2"}, _increment()) is not None

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(apply, range(8)))
    assert results.count(True) == 1
    assert _items("c2")["CALL"]["applied"] == {"N": "1"}


def test_a_condition_that_does_not_hold_changes_nothing(cloud: dict[str, str]) -> None:
    update = _increment().bind({"#f": "final"}, yes=True)
    assert not calls.apply_once(ACCOUNT, "c3", RING, "2026-12-07T10:00:00Z", {}, update, "#f = :yes")
    assert _items("c3") == {}
    # The same record applies once the condition holds: it was not taken for a repeat.
    assert calls.apply_once(ACCOUNT, "c3", RING, "2026-12-07T10:00:01Z", {}, _increment())


def test_a_lost_timeline_write_is_made_by_the_retry_and_the_effect_stays_single(
    lost_timeline_writes: list[str],
) -> None:
    lost_timeline_writes.append("c4")
    with pytest.raises(TimeoutError):
        calls.apply_once(ACCOUNT, "c4", RING, "2026-12-07T10:00:00Z", {"callid": "c4"}, _increment())
    assert "EVT#event#INCOMING#101" not in _items("c4")
    # The PBX did not get its 200 and sends again: refused as a repeat, the timeline item written.
    assert not calls.apply_once(ACCOUNT, "c4", RING, "2026-12-07T10:00:07Z", {"callid": "c4"}, _increment())
    items = _items("c4")
    assert items["CALL"]["applied"] == {"N": "1"}
    assert items["EVT#event#INCOMING#101"]["received_at"] == {"S": "2026-12-07T10:00:07Z"}


def test_a_call_item_from_before_marks_is_decided_by_its_timeline(cloud: dict[str, str]) -> None:
    table = get_settings().calls_table
    client = aws.dynamodb()
    # As the transaction that wrote a marker item with its effect left a call.
    client.put_item(TableName=table, Item={**call_key(ACCOUNT, "c5"), **to_item({"account": ACCOUNT, "applied": 1})})
    client.put_item(
        TableName=table,
        Item={**call_key(ACCOUNT, "c5", "EVT#event#INCOMING#101"), **to_item({"received_at": "2026-12-07T09:59:59Z"})},
    )
    assert not calls.apply_once(ACCOUNT, "c5", RING, "2026-12-07T10:00:00Z", {}, _increment())
    assert _items("c5")["CALL"]["applied"] == {"N": "1"}
    answer = Marker("event", "ACCEPTED", "101")
    assert calls.apply_once(ACCOUNT, "c5", answer, "2026-12-07T10:00:10Z", {}, _increment())
    assert not calls.apply_once(ACCOUNT, "c5", answer, "2026-12-07T10:00:11Z", {}, _increment())
    # The ring applied before the upgrade stays applied once, also after the call has `marks`.
    assert not calls.apply_once(ACCOUNT, "c5", RING, "2026-12-07T10:00:12Z", {}, _increment())
    items = _items("c5")
    assert items["CALL"]["applied"] == {"N": "2"}
    marks = {calls.mark_of("EVT#event#ACCEPTED#101"), calls.mark_of("EVT#event#INCOMING#101")}
    assert set(items["CALL"]["marks"]["SS"]) == marks
    assert "EVT#event#ACCEPTED#101" in items
