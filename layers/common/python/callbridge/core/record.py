"""Writing a source's final call (Cloud PBX history, telediscount `finished` / `get_calls`, ccrm.pl
`callHistory`) into the one Calls item shape, then handing it to pipeline.call_stored.

Every source record is applied once: its marker (the EVT item of the call, e.g.
`Marker("telediscount", "finished", "")`) is written in the same transaction as the call, so a
webhook, the reconciliation that recovers it and a backfill of the same call store it exactly once,
whichever comes first. Bulk imports (backfill --store-only) use `store_final_batch`: the same items,
written with batch writes after a batch read of the markers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from callbridge.core import pipeline
from callbridge.core.model import Direction, Outcome, StartSource
from callbridge.infra import aws, clock
from callbridge.infra.settings import get_settings
from callbridge.store import calls
from callbridge.store.dynamo import to_item
from callbridge.store.updates import Update

_BATCH_GET = 100
_BATCH_WRITE = 25


@dataclass(frozen=True)
class FinalCall:
    """A finished call as a source reports it, already in canonical terms."""

    call_id: str
    source: str
    marker: calls.Marker
    direction: Direction
    outcome: Outcome
    phone: str  # E.164 key (or the raw text when it is not a number)
    phone_raw: str
    started_at: str  # UTC ISO Z
    start_source: StartSource
    duration: int = 0
    our_number: str | None = None
    user: str | None = None
    recording_url: str | None = None  # a link the recordings worker may fetch (never with a key)
    flags: frozenset[str] = frozenset()
    raw: dict[str, Any] = field(default_factory=dict)  # the source record, secrets removed
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific attributes (notes, waiting_time…)

    def attributes(self, account: str, now_iso: str) -> dict[str, Any]:
        """The attributes of the CALL item this call sets (as in ingest.record_history)."""
        return {
            "account": account,
            "call_id": self.call_id,
            "source": self.source,
            "direction": self.direction.value,
            "outcome": self.outcome.value,
            "final": True,
            "user": self.user,
            "phone": self.phone,
            "phone_raw": self.phone_raw,
            "our_number": self.our_number,
            "duration": self.duration,
            "started_at": self.started_at,
            "start_source": self.start_source.value,
            "recording_url": self.recording_url,
            "source_raw": json.dumps(self.raw, ensure_ascii=False, sort_keys=True),
            "updated_at": now_iso,
            "gsi1pk": account,
            "gsi1sk": f"{self.started_at}#{self.call_id}",
            **self.extra,
        }


def store_final(account: str, call: FinalCall, *, deliver: bool = True) -> bool:
    """Store one final call once and hand it on. False when this source record was already stored
    (by the webhook, the reconciliation, the poller or a backfill): nothing changes then."""
    now_iso = clock.iso(clock.now())
    update = Update().set(**call.attributes(account, now_iso))
    update.set_if_absent(created_at=now_iso, finalized_at=now_iso)
    if call.flags:
        update.add_to_set("flags", *sorted(call.flags))
    applied = calls.apply_once(account, call.call_id, call.marker, now_iso, call.raw, update)
    if applied:
        _hand_off(account, call, deliver)
    return applied


def store_imported(account: str, batch: Sequence[FinalCall], *, deliver: bool = True, workers: int = 8) -> int:
    """Store the final calls of a source that only its importer ever writes (ccrm.pl: no webhooks,
    no live state); returns how many were new. The call item itself is the gate - one conditional
    put each, created only if absent - and the markers follow in batch writes. As exact as a
    transaction and much cheaper: only the put that creates an item hands its call on. A crash
    before the markers leaves calls without them; the next read of those records re-adds them (the
    puts then fail: nothing is handed on twice).
    """
    now_iso = clock.iso(clock.now())
    client = aws.dynamodb()
    table = get_settings().calls_table

    def put(call: FinalCall) -> bool:
        attributes = call.attributes(account, now_iso)
        attributes.update(created_at=now_iso, finalized_at=now_iso)
        if call.flags:
            attributes["flags"] = set(call.flags)
        try:
            client.put_item(
                TableName=table,
                Item={**to_item(attributes), **calls.call_key(account, call.call_id)},
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    unique = list({c.call_id: c for c in batch}.values())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        created = [call for call, new in zip(unique, pool.map(put, unique), strict=True) if new]
    _batch_write(_marker_item(account, call, now_iso) for call in unique)
    for call in created:
        _hand_off(account, call, deliver)
    return len(created)


def store_final_batch(account: str, batch: Sequence[FinalCall], *, deliver: bool = False) -> int:
    """Store many final calls with batch reads and writes (backfill); returns how many were new.

    The calls whose marker exists are skipped, so a second run changes nothing. Unlike store_final
    this is not atomic against a webhook storing the same call at the same instant: that call's item
    is then written twice with the same content. Bulk imports of past days do not meet live calls.
    """
    unique = list({c.call_id: c for c in batch}.values())
    known = _existing_markers(account, unique)
    fresh = [c for c in unique if (c.call_id, c.marker.sk) not in known]
    now_iso = clock.iso(clock.now())
    items: list[dict[str, Any]] = []
    for call in fresh:
        attributes = call.attributes(account, now_iso)
        attributes.update(created_at=now_iso, finalized_at=now_iso)
        if call.flags:
            attributes["flags"] = set(call.flags)
        # The marker goes after the call: an interrupted batch leaves at worst a call without its
        # marker, which the next run writes again (same content), never a marker without its call.
        items.append({**to_item(attributes), **calls.call_key(account, call.call_id)})
    items.extend(_marker_item(account, call, now_iso) for call in fresh)
    _batch_write(items)
    for call in fresh:
        _hand_off(account, call, deliver)
    return len(fresh)


def _hand_off(account: str, call: FinalCall, deliver: bool) -> None:
    """A call this source made final for the first time goes to the recording and delivery workers."""
    pipeline.call_stored(
        account,
        call.call_id,
        newly_final=True,
        fetch_recording=bool(call.recording_url),
        deliver=deliver,
        source=call.source,
        outcome=call.outcome.value,
    )


def _marker_item(account: str, call: FinalCall, now_iso: str) -> dict[str, Any]:
    return to_item(
        {
            "pk": calls.call_pk(account, call.call_id),
            "sk": call.marker.sk,
            "cmd": call.marker.cmd,
            "type": call.marker.type,
            "user": call.marker.user,
            "received_at": now_iso,
            "raw": json.dumps(call.raw, ensure_ascii=False, sort_keys=True),
        }
    )


def _existing_markers(account: str, batch: Sequence[FinalCall]) -> set[tuple[str, str]]:
    return marked(account, [(c.call_id, c.marker) for c in batch])


def marked(account: str, wanted: Sequence[tuple[str, calls.Marker]]) -> set[tuple[str, str]]:
    """The (call id, marker sk) pairs of `wanted` already recorded: a cheap batch read that lets a
    poller re-reading an overlapping window skip what it stored before (apply_once still decides)."""
    table = get_settings().calls_table
    client = aws.dynamodb()
    found: set[tuple[str, str]] = set()
    by_pk = {calls.call_pk(account, call_id): call_id for call_id, _ in wanted}
    unique = list(dict.fromkeys(wanted))
    for start in range(0, len(unique), _BATCH_GET):
        keys = [
            {"pk": {"S": calls.call_pk(account, call_id)}, "sk": {"S": marker.sk}}
            for call_id, marker in unique[start : start + _BATCH_GET]
        ]
        request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "pk, sk"}}
        while request:
            response = client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                found.add((by_pk[item["pk"]["S"]], item["sk"]["S"]))
            request = response.get("UnprocessedKeys") or {}
    return found


def _batch_write(items: Iterable[dict[str, Any]]) -> None:
    table = get_settings().calls_table
    client = aws.dynamodb()
    pending = [{"PutRequest": {"Item": item}} for item in items]
    for start in range(0, len(pending), _BATCH_WRITE):
        request: dict[str, Any] = {table: pending[start : start + _BATCH_WRITE]}
        while request:
            response = client.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}
