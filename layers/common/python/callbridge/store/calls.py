"""Calls table: the canonical call, its timeline of received webhooks, and (later) deliveries.

pk = CALL#{account}#{call id}
  sk = CALL                         the canonical call (one item whatever path created it)
  sk = EVT#{cmd}#{type}#{user}      one per distinct webhook: the timeline and the idempotency record
Every webhook is applied in one conditional write of the call item that also records its marker
(`marks`), so a PBX retry changes nothing and a crash can't leave the marker without its effect (or
the effect without its marker); its EVT item is the timeline's copy of what was received.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import CONDITION_FAILED, from_item, put_if, query_items, scan_items, to_item, update_if
from callbridge.store.keys import CALL_SK as CALL_SK
from callbridge.store.keys import EVENT_PREFIX, event_sk
from callbridge.store.keys import call_key as call_key
from callbridge.store.keys import call_pk as call_pk
from callbridge.store.retention import expires_at
from callbridge.store.updates import Update


class MarkerFields(Protocol):
    """What the store needs of a source record's identity (the core's `Marker`, core/terms.py):
    its EVT item is keyed and described by it."""

    @property
    def cmd(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def user(self) -> str: ...


def _sk(marker: MarkerFields) -> str:
    return event_sk(marker.cmd, marker.type, marker.user)


def _table() -> str:
    return get_settings().calls_table


# -- the source record as stored ------------------------------------------------------------------
# A source record may carry fields nobody documents, of any size, and it is stored twice: on the
# call (`history_raw`, core/record.py) and on its marker. An item over DynamoDB's 400 KB limit is
# refused on every retry, so the call would never be stored: the record is bounded here, where both
# items get it. The fields the call needs are its own attributes, parsed before this, so nothing the
# call needs is lost; the stored record says what was cut (RAW_CUT_NOTE) and the call is flagged
# `raw_truncated`.
RAW_VALUE_BYTES = 4096  # one value (its JSON); above every documented field's limit
RAW_KEY_BYTES = 256  # one field name
RAW_BYTES = 64 * 1024  # the whole record before the note: well under the item limit, twice
RAW_CUT_NOTE = "_callbridge_cut"  # what was cut: field -> "truncated|dropped, N bytes"
_NOTE_ENTRIES = 100


@dataclass(frozen=True, slots=True)
class StoredRaw:
    text: str  # the JSON stored
    truncated: bool  # something of the record was cut


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _size(value: Any) -> int:
    return len(_json(value).encode("utf-8"))


def _clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, never inside a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def stored_raw(raw: Mapping[str, Any]) -> StoredRaw:
    """The source record as stored: values over RAW_VALUE_BYTES are truncated to it, then the
    largest values are dropped until the record fits RAW_BYTES; a record within both is unchanged."""
    text = _json(raw)
    if len(text.encode("utf-8")) <= min(RAW_VALUE_BYTES, RAW_BYTES):
        return StoredRaw(text, False)
    kept: dict[str, Any] = {}
    cut: dict[str, str] = {}
    for key, value in raw.items():
        name = str(key)
        if len(name.encode("utf-8")) > RAW_KEY_BYTES:
            name = _clip(name, RAW_KEY_BYTES - 8) + f"…{len(kept)}"
            cut[name] = f"name truncated, {len(str(key).encode('utf-8'))} bytes"
        size = _size(value)
        if size > RAW_VALUE_BYTES:
            value = _clip(value if isinstance(value, str) else _json(value), RAW_VALUE_BYTES - 8)
            cut[name] = f"truncated, {size} bytes"
        kept[name] = value
    sizes = {name: _size(name) + _size(value) + 2 for name, value in kept.items()}
    total = sum(sizes.values()) + 2
    for name in sorted(sizes, key=lambda n: sizes[n], reverse=True):
        if total <= RAW_BYTES:
            break
        cut[name] = f"dropped, {_size(raw.get(name, kept[name]))} bytes"
        total -= sizes[name]
        del kept[name]
    if not cut:
        return StoredRaw(text, False)
    shown = dict(list(cut.items())[:_NOTE_ENTRIES])
    if len(cut) > _NOTE_ENTRIES:
        shown["…"] = f"{len(cut) - _NOTE_ENTRIES} more fields cut"
    kept[RAW_CUT_NOTE] = shown
    return StoredRaw(_json(kept), True)


# The markers of the source records applied to a call, on the call item itself: the one write of a
# webhook checks and records its marker with its effect (see apply_once). Each as mark_of(its EVT sk):
# a call rung through a group of fifty phones has some 150 records, and the call item is billed by
# its size on every write, so 11 bytes a record rather than the sk's 25-60.
MARKS_ATTRIBUTE = "marks"


def mark_of(sk: str) -> str:
    """A marker's entry in `marks`: 64 bits of its BLAKE2b digest, so two distinct records of one call
    are never taken for each other in practice (a call has hundreds at most)."""
    return base64.urlsafe_b64encode(hashlib.blake2b(sk.encode(), digest_size=8).digest()).rstrip(b"=").decode()


def apply_once(
    account: str,
    call_id: str,
    marker: MarkerFields,
    received_at: str,
    raw: dict[str, Any],
    update: Update,
    condition: str | None = None,
    *,
    raw_attribute: str | None = None,
) -> dict[str, Any] | None:
    """Apply `update` to the call and record `marker`, atomically; the call item as the write left it
    (no read needed after it). None when this exact webhook was already applied (a retry), or when
    `condition` (on the call item; its names and values bound on `update`) does not hold: nothing is
    changed then. `raw_attribute`: the call also keeps the source's record (bounded as on the marker)
    under that name.

    One conditional UpdateItem decides: the marker joins the call's `marks` in the same write as its
    effect, so a retry or a twin racing us finds it there and changes nothing. It is half the price
    of the transaction with a marker item that this replaced (a transaction bills every item twice),
    and as exact. The timeline's EVT item (the record as received) follows; if that second write is
    lost, the PBX's retry (refused as a repeat) writes it."""
    stored = stored_raw(raw)
    sk = _sk(marker)
    if raw_attribute:
        update.set(**{raw_attribute: stored.text})
    if stored.truncated:
        update.set(raw_truncated=True)
    update.set_if_absent(expires_at=expires_at())
    update.bind({"#mk": MARKS_ATTRIBUTE}, mk=mark_of(sk))
    # A call item written before `marks` existed keeps its markers as EVT items only: it is
    # refused here and decided by its EVT items (_apply_to_older_item).
    guard = "NOT contains(#mk, :mk) AND (attribute_exists(#mk) OR attribute_not_exists(pk))"
    done, item = _update_or_old(account, call_id, _marking(update, {sk}), _and(condition, guard))
    if done:
        _keep_on_timeline(account, call_id, marker, received_at, stored)
        return item
    if mark_of(sk) in (item.get(MARKS_ATTRIBUTE) or ()):
        _keep_on_timeline(account, call_id, marker, received_at, stored)  # a retry after a lost write
        return None
    if item and MARKS_ATTRIBUTE not in item:
        return _apply_to_older_item(account, call_id, marker, received_at, stored, update, condition)
    return None  # `condition` does not hold


def _update_or_old(account: str, call_id: str, update: Update, condition: str) -> tuple[bool, dict[str, Any]]:
    """(True, the call item after the update) when the conditional update was applied; else (False,
    the call item as it was, empty when absent)."""
    try:
        response = aws.dynamodb().update_item(
            TableName=_table(),
            Key=call_key(account, call_id),
            ConditionExpression=condition,
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **update.request(),
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != CONDITION_FAILED:
            raise
        old: dict[str, Any] = error.response.get("Item") or {}  # type: ignore[assignment]
        return False, from_item(old) if old else {}
    return True, from_item(response["Attributes"])


def _apply_to_older_item(
    account: str,
    call_id: str,
    marker: MarkerFields,
    received_at: str,
    stored: StoredRaw,
    update: Update,
    condition: str | None,
) -> dict[str, Any] | None:
    """A call item without `marks`: its EVT items say what was applied, and they all become its
    `marks` with this record's."""
    sk = _sk(marker)
    applied = {str(item["sk"]) for item in timeline(account, call_id)}
    if sk in applied:
        return None
    guard = "NOT contains(#mk, :mk)"  # a twin racing us past the read above: one of us wins here
    done, item = _update_or_old(account, call_id, _marking(update, {sk, *applied}), _and(condition, guard))
    if not done:
        return None
    _keep_on_timeline(account, call_id, marker, received_at, stored)
    return item


def _marking(update: Update, marks: set[str]) -> Update:
    """`update` that also adds the markers of `marks` (EVT sks) to the call's (a copy: the caller may
    try again)."""
    return copy.deepcopy(update).add_to_set(MARKS_ATTRIBUTE, *sorted(mark_of(sk) for sk in marks))


def _and(condition: str | None, guard: str) -> str:
    return f"({condition}) AND {guard}" if condition else guard


def _keep_on_timeline(account: str, call_id: str, marker: MarkerFields, received_at: str, stored: StoredRaw) -> None:
    """The record's EVT item, unless it is there (the first receipt's time stays)."""
    put_if(
        TableName=_table(),
        Item=_marker_item(account, call_id, marker, received_at, stored),
        ConditionExpression="attribute_not_exists(pk)",
    )


def get_call(account: str, call_id: str) -> dict[str, Any] | None:
    response = aws.dynamodb().get_item(TableName=_table(), Key=call_key(account, call_id), ConsistentRead=True)
    item = response.get("Item")
    return from_item(item) if item else None


def update_call(account: str, call_id: str, update: Update, condition: str | None = None) -> bool:
    """Conditional update of the call item; False when the condition did not hold."""
    request = update.request()
    if condition:
        request["ConditionExpression"] = condition
    return update_if(TableName=_table(), Key=call_key(account, call_id), **request)


def timeline(account: str, call_id: str) -> list[dict[str, Any]]:
    """Every webhook received for a call, oldest first."""
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :evt)",
        "ExpressionAttributeValues": {":pk": {"S": call_pk(account, call_id)}, ":evt": {"S": EVENT_PREFIX}},
        "ConsistentRead": True,
    }
    items = [from_item(i) for i in query_items(kwargs)]
    return sorted(items, key=lambda i: (i.get("received_at", ""), i.get("sk", "")))


def recordings_not_stored(account: str | None = None) -> list[dict[str, Any]]:
    """Calls (of `account`, or of every account) with an http(s) recording link whose recording is
    not stored: marked unavailable, or never marked. Only account, call_id, recording_state and
    recording_error are read. A scan: an operator's tool, never a request path."""
    expression = (
        "sk = :call AND begins_with(recording_url, :http)"
        " AND (attribute_not_exists(recording_state) OR recording_state <> :stored)"
    )
    values: dict[str, Any] = {":call": {"S": CALL_SK}, ":http": {"S": "http"}, ":stored": {"S": "stored"}}
    if account:
        expression += " AND account = :account"
        values[":account"] = {"S": account}
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "FilterExpression": expression,
        "ExpressionAttributeValues": values,
        "ProjectionExpression": "account, call_id, recording_state, recording_error",
    }
    return [from_item(i) for i in scan_items(kwargs)]


def list_calls(account: str, limit: int = 50) -> list[dict[str, Any]]:
    """An account's calls, newest first (those with a known start time)."""
    response = aws.dynamodb().query(
        TableName=_table(),
        IndexName="ByAccount",
        KeyConditionExpression="gsi1pk = :a",
        ExpressionAttributeValues={":a": {"S": account}},
        ScanIndexForward=False,
        Limit=limit,
    )
    return [from_item(i) for i in response.get("Items", [])]


def finalize_if_unanswered(account: str, call_id: str, update: Update, *, still_ringing_at: str | None = None) -> bool:
    """Apply `update` (a call made final as missed) only while the call is still not final, not
    answered and ringing nowhere, so that a late answer or a final record that raced us wins.

    `still_ringing_at`: a call past its maximum ringing age is made final although a phone seems to
    ring, but only while its last event is still the one read (`last_event_at`): any event that
    came meanwhile (a ring, an answer, a stop) means the call is alive, and it wins."""
    update.bind({"#cf": "final", "#ca": "accepted_by"}, cfalse=False)
    condition = "(attribute_not_exists(#cf) OR #cf = :cfalse) AND attribute_not_exists(#ca)"
    if still_ringing_at is None:
        update.bind({"#cr": "ringing"})
        condition += " AND attribute_not_exists(#cr)"
    else:
        update.bind({"#cl": "last_event_at"}, clast=still_ringing_at)
        condition += " AND #cl = :clast"
    return update_call(account, call_id, update, condition=condition)


def unring_if_stopped(account: str, call_id: str, user: str) -> bool:
    """Take `user` off the call's ringing phones when a stop of that phone (`stopped`) was recorded
    before its ring arrived: events are facts about a leg, whatever order they come in."""
    update = Update().remove_from_set("ringing", user).bind({"#cs": "stopped"}, cu=user)
    return update_call(account, call_id, update, condition="contains(#cs, :cu)")


def finalize_if_not_final(account: str, call_id: str, update: Update) -> bool:
    """Apply `update` (a call made final from its events) only while no final record made it final."""
    update.names["#cf"] = "final"
    update.values[":cfalse"] = {"BOOL": False}
    return update_call(account, call_id, update, condition="attribute_not_exists(#cf) OR #cf = :cfalse")


# -- bulk writes of final calls (importers, backfill) ---------------------------------------------

_BATCH_GET = 100
_BATCH_WRITE = 25


def marker_item(
    account: str, call_id: str, marker: MarkerFields, received_at: str, raw: dict[str, Any]
) -> dict[str, Any]:
    """The EVT item of one source record (typed), as apply_once writes it."""
    return _marker_item(account, call_id, marker, received_at, stored_raw(raw))


def _marker_item(account: str, call_id: str, marker: MarkerFields, received_at: str, raw: StoredRaw) -> dict[str, Any]:
    return to_item(
        {
            "pk": call_pk(account, call_id),
            "sk": _sk(marker),
            "cmd": marker.cmd,
            "type": marker.type,
            "user": marker.user,
            "received_at": received_at,
            "raw": raw.text,
            "expires_at": expires_at(),
        }
    )


def call_item(account: str, call_id: str, attributes: dict[str, Any]) -> dict[str, Any]:
    """A whole CALL item (typed) from plain attributes."""
    return {**to_item({"expires_at": expires_at(), **attributes}), **call_key(account, call_id)}


def put_call_if_absent(account: str, call_id: str, attributes: dict[str, Any]) -> bool:
    """Create the call item unless it exists; False when it did (nothing is changed then)."""
    return put_if(
        TableName=_table(),
        Item=call_item(account, call_id, attributes),
        ConditionExpression="attribute_not_exists(pk)",
    )


def batch_put(items: Iterable[dict[str, Any]]) -> None:
    """Put typed items with batch writes, in order, retrying what DynamoDB left unprocessed."""
    table = _table()
    client = aws.dynamodb()
    pending = [{"PutRequest": {"Item": item}} for item in items]
    for start in range(0, len(pending), _BATCH_WRITE):
        request: dict[str, Any] = {table: pending[start : start + _BATCH_WRITE]}
        while request:
            response = client.batch_write_item(RequestItems=request)
            request = response.get("UnprocessedItems") or {}


def marked(account: str, wanted: Sequence[tuple[str, MarkerFields]]) -> set[tuple[str, str]]:
    """The (call id, marker sk) pairs of `wanted` already recorded, with batch reads."""
    table = _table()
    client = aws.dynamodb()
    found: set[tuple[str, str]] = set()
    by_pk = {call_pk(account, call_id): call_id for call_id, _ in wanted}
    unique = list(dict.fromkeys(wanted))
    for start in range(0, len(unique), _BATCH_GET):
        keys = [call_key(account, call_id, _sk(marker)) for call_id, marker in unique[start : start + _BATCH_GET]]
        request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "pk, sk"}}
        while request:
            response = client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                found.add((by_pk[item["pk"]["S"]], item["sk"]["S"]))
            request = response.get("UnprocessedKeys") or {}
    return found


def states(account: str, call_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The call items among `call_ids` that exist, with batch reads: whether each is final and was
    derived from its events, its recording's state (only those attributes are read)."""
    table = _table()
    client = aws.dynamodb()
    found: dict[str, dict[str, Any]] = {}
    unique = list(dict.fromkeys(call_ids))
    for start in range(0, len(unique), _BATCH_GET):
        keys = [call_key(account, call_id) for call_id in unique[start : start + _BATCH_GET]]
        request: dict[str, Any] = {
            table: {
                "Keys": keys,
                "ConsistentRead": True,
                "ProjectionExpression": "call_id, #f, derived_from, recording_state",
                "ExpressionAttributeNames": {"#f": "final"},
            }
        }
        while request:
            response = client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                state = from_item(item)
                found[str(state.get("call_id"))] = state
            request = response.get("UnprocessedKeys") or {}
    return found
