"""Delivery items of the Calls table: pk = CALL#{account}#{call id}, sk = DLV#{crm name}.

    state        pending | delivered | not_applicable | rejected | failed
    dlv_pk       {account}#{crm}            while pending (the drain's partition)
                 REJECTED#{account}#{crm}    rejected by the CRM (or unsendable): the operator's list
                 FAILED#{account}#{crm}      gave up after DELIVERY_MAX_ATTEMPTS transient failures
                 (absent once delivered or not applicable: the index holds nothing of the history)
    dlv_due      {due time ISO}#{call id}   the index sort key: due work comes out oldest first
    lease_until / lease_owner   set by a worker that took the delivery (conditional update)
    redelivery_at               an operator asked for it again (the console) and no worker took it yet
    attempts, last_error, reason, flags, delivered_at, crm_answer
    recording_follows           delivered before its recording was stored, to a CRM that takes the
                                recording only as a file: it is sent as an update once stored
    recording_update            pending again for that update alone (reopen_for_recording);
                                recording_sent_at once it went
    recording_wait              pending, held until its recording is stored or given up, for a CRM
                                that downloads the file when it gets the call (wake_for_recording)

The Deliveries index (dlv_pk, dlv_due) is sparse: finding work costs what is pending, never what was
delivered. It is KEYS_ONLY; the worker reads the call items it actually sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from callbridge.infra import aws, clock
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, query_items, updated_item_if
from callbridge.store.keys import DELIVERY_PREFIX, call_key, call_pk, delivery_sk
from callbridge.store.keys import call_id_of as _call_id_of
from callbridge.store.retention import expires_at
from callbridge.store.updates import Update

INDEX = "Deliveries"
PENDING, DELIVERED, REJECTED, FAILED = "pending", "delivered", "rejected", "failed"
# Neither delivered nor failed: this CRM has no place for the call (a withheld caller id to a CRM
# that files calls by number). Settled like a delivery, never retried, never parked or alarmed.
NOT_APPLICABLE = "not_applicable"
PARKED = (REJECTED, FAILED)
RECORDING_FOLLOWS, RECORDING_UPDATE = "recording_follows", "recording_update"
RECORDING_WAIT = "recording_wait"


dlv_sk = delivery_sk


def queue_key(account: str, crm: str) -> str:
    return f"{account}#{crm}"


def parked_key(state: str, account: str, crm: str) -> str:
    return f"{state.upper()}#{account}#{crm}"


def due_key(due: datetime, call_id: str) -> str:
    return f"{clock.iso(due)}#{call_id}"


def key(account: str, call_id: str, crm: str) -> dict[str, Any]:
    return call_key(account, call_id, dlv_sk(crm))


def call_id_of(pk: str, account: str) -> str:
    return _call_id_of(account, pk)


def _table() -> str:
    return get_settings().calls_table


def _update(
    account: str, call_id: str, crm: str, update: Update, condition: str | None = None
) -> dict[str, Any] | None:
    """The delivery item after the update, or None when `condition` did not hold."""
    request: dict[str, Any] = {"TableName": _table(), "Key": key(account, call_id, crm)}
    request.update(update.request())
    if condition:
        request["ConditionExpression"] = condition
    return updated_item_if(**request)


def create(
    account: str,
    call_id: str,
    crm: str,
    kind: str,
    mode: str,
    due: datetime,
    now: datetime,
    *,
    recording_wait: bool = False,
) -> bool:
    """The delivery of a call to one CRM; False when it exists already (a repeated hand-off).
    `recording_wait`: held until the call's recording settles (wake_for_recording)."""
    update = Update().set(
        account=account,
        call_id=call_id,
        crm=crm,
        crm_kind=kind,
        mode=mode,
        state=PENDING,
        attempts=0,
        created_at=clock.iso(now),
        dlv_pk=queue_key(account, crm),
        dlv_due=due_key(due, call_id),
        expires_at=expires_at(),
        **({RECORDING_WAIT: True} if recording_wait else {}),
    )
    return _update(account, call_id, crm, update, "attribute_not_exists(pk)") is not None


def due(account: str, crm: str, now: datetime, limit: int) -> Iterator[str]:
    """Call ids whose delivery to `crm` is pending and due, oldest due first (at most `limit`)."""
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "IndexName": INDEX,
        # '$' sorts right after '#': every key due at or before `now`, whatever its call id.
        "KeyConditionExpression": "dlv_pk = :q AND dlv_due < :until",
        "ExpressionAttributeValues": {":q": {"S": queue_key(account, crm)}, ":until": {"S": clock.iso(now) + "$"}},
        "Limit": 1000,  # what one page asks for at most (less once fewer are still wanted)
    }
    for item in query_items(kwargs, at_most=limit):
        yield call_id_of(item["pk"]["S"], account)


def claim(account: str, call_id: str, crm: str, owner: str, now: datetime, lease_s: int) -> dict[str, Any] | None:
    """Take a pending delivery for `lease_s` seconds; None when it is not pending or another
    worker holds a live lease. The item as it is after the claim otherwise (no extra read)."""
    update = Update().set(lease_until=clock.iso(now + timedelta(seconds=lease_s)), lease_owner=owner)
    # A redelivery the operator asked for is being done now: a new request may ask again after this.
    update.remove("redelivery_at")
    update.bind({"#s": "state", "#lu": "lease_until"}, pending=PENDING, now=clock.iso(now))
    condition = "#s = :pending AND (attribute_not_exists(#lu) OR #lu < :now)"
    return _update(account, call_id, crm, update, condition)


def mark_delivered(
    account: str,
    call_id: str,
    crm: str,
    now: datetime,
    answer: dict[str, Any],
    flags: list[str],
    *,
    recording_follows: bool = False,
) -> None:
    """Delivered: out of the index for good. Unconditional: the CRM has the call, whoever says so.
    `recording_follows`: the call went before its recording was stored, which the CRM takes later
    as an update (reopen_for_recording)."""
    update = Update().set(
        state=DELIVERED,
        delivered_at=clock.iso(now),
        crm_answer=answer or {"ok": True},
        flags=_flags(flags),
        **({RECORDING_FOLLOWS: True} if recording_follows else {}),
    )
    _update(account, call_id, crm, update.remove("dlv_pk", "dlv_due", "lease_until", "lease_owner", RECORDING_WAIT))


def reopen_for_recording(account: str, call_id: str, crm: str, due: datetime) -> bool:
    """The recording of a call delivered without it is stored: the delivery is pending again, for
    the recording alone, due at `due` (the drain's, if the queue does not send it first). False
    unless it waited for it: of the recording worker and a delivery worker that both saw the
    recording stored, one sends it."""
    update = Update().set(
        state=PENDING, dlv_pk=queue_key(account, crm), dlv_due=due_key(due, call_id), attempts=0,
        **{RECORDING_UPDATE: True},
    )  # fmt: skip
    update.remove(RECORDING_FOLLOWS).bind({"#s": "state", "#f": RECORDING_FOLLOWS}, delivered=DELIVERED)
    return _update(account, call_id, crm, update, "#s = :delivered AND attribute_exists(#f)") is not None


def wake_for_recording(account: str, call_id: str, crm: str) -> bool:
    """The recording a held delivery waited for is stored or given up: held no more, for its caller
    to queue it. False unless it was held: of the recording worker and a delivery worker that both
    saw it settle, one queues it. Its due time (the drain's, should the message be lost) stays: a
    move would rewrite its index entry."""
    update = Update().remove(RECORDING_WAIT).bind({"#s": "state", "#w": RECORDING_WAIT}, pending=PENDING)
    return _update(account, call_id, crm, update, "#s = :pending AND attribute_exists(#w)") is not None


def forget_recording(account: str, call_id: str, crm: str) -> None:
    """The recording a delivered call waited for was given up: nothing follows."""
    update = Update().remove(RECORDING_FOLLOWS).bind({"#f": RECORDING_FOLLOWS})
    _update(account, call_id, crm, update, "attribute_exists(#f)")


def mark_recording_sent(account: str, call_id: str, crm: str, now: datetime, answer: dict[str, Any]) -> None:
    """The recording went as an update of a delivered call: delivered again, its first answer kept."""
    update = Update().set(state=DELIVERED, recording_sent_at=clock.iso(now), recording_answer=answer or {"ok": True})
    _update(account, call_id, crm, update.remove("dlv_pk", "dlv_due", "lease_until", "lease_owner", RECORDING_UPDATE))


def mark_not_applicable(account: str, call_id: str, crm: str, now: datetime, reason: str, flags: list[str]) -> None:
    """Not applicable: out of the index for good, with the reason (`callbridge calls show`)."""
    update = Update().set(state=NOT_APPLICABLE, settled_at=clock.iso(now), reason=reason[:1000], flags=_flags(flags))
    _update(account, call_id, crm, update.remove("dlv_pk", "dlv_due", "lease_until", "lease_owner"))


def park(
    state: str, account: str, call_id: str, crm: str, now: datetime, reason: str, attempts: int, flags: list[str]
) -> None:
    """Rejected or failed: moved to the operator's list (`list_parked`), never retried on its own."""
    update = Update().set(
        state=state,
        dlv_pk=parked_key(state, account, crm),
        dlv_due=due_key(now, call_id),
        reason=reason[:1000] or state,
        parked_at=clock.iso(now),
        attempts=attempts,
        flags=_flags(flags),
    )
    _update(account, call_id, crm, update.remove("lease_until", "lease_owner"))


def reschedule(
    account: str,
    call_id: str,
    crm: str,
    owner: str,
    due_at: datetime,
    *,
    attempts: int,
    error: str = "",
    recording_wait: bool = False,
) -> bool:
    """Back to pending, due at `due_at` (a transient failure, or waiting for the recording). Only
    by the lease holder: a worker whose lease ran out must not undo another's result.
    `recording_wait`: held for the recording, which wakes it once settled (wake_for_recording)."""
    update = Update().set(
        dlv_due=due_key(due_at, call_id),
        attempts=attempts,
        last_error=error[:1000] or None,
        **({RECORDING_WAIT: True} if recording_wait else {}),
    )
    update.remove("lease_until", "lease_owner").bind({"#s": "state", "#lo": "lease_owner"}, me=owner, pending=PENDING)
    return _update(account, call_id, crm, update, "#lo = :me AND #s = :pending") is not None


def requeue(account: str, call_id: str, crm: str, now: datetime) -> bool:
    """An operator's retry of a parked delivery: pending again, due now, attempts from zero."""
    update = Update().set(state=PENDING, dlv_pk=queue_key(account, crm), dlv_due=due_key(now, call_id), attempts=0)
    update.remove("lease_until", "lease_owner", "parked_at")
    update.bind({"#s": "state"}, rejected=REJECTED, failed=FAILED)
    return _update(account, call_id, crm, update, "#s IN (:rejected, :failed)") is not None


def redeliver_parked(account: str, call_id: str, crm: str, now: datetime) -> bool:
    """An operator's redelivery of a parked delivery: pending again, due now, attempts from zero, and
    marked requested (`redelivery_at`) until a worker takes it. False unless it was parked: a second
    request (a double click) finds it pending and marked, and queues nothing more."""
    update = Update().set(
        state=PENDING,
        dlv_pk=queue_key(account, crm),
        dlv_due=due_key(now, call_id),
        attempts=0,
        redelivery_at=clock.iso(now),
    )
    update.remove("lease_until", "lease_owner", "parked_at")
    update.bind({"#s": "state"}, rejected=REJECTED, failed=FAILED)
    return _update(account, call_id, crm, update, "#s IN (:rejected, :failed)") is not None


def redeliver_pending(account: str, call_id: str, crm: str, now: datetime, requested_before: datetime) -> bool:
    """An operator's redelivery of a pending delivery: due now instead of at its backoff, marked
    requested. Only while nobody holds a live lease (a worker is sending it right now) and no earlier
    request newer than `requested_before` is waiting for a worker; False otherwise. Attempts are kept:
    the backoff of a CRM that is still down goes on from there."""
    update = Update().set(dlv_due=due_key(now, call_id), redelivery_at=clock.iso(now))
    update.bind(
        {"#s": "state", "#lu": "lease_until", "#r": "redelivery_at"},
        pending=PENDING,
        now=clock.iso(now),
        stale=clock.iso(requested_before),
    )
    condition = (
        "#s = :pending AND (attribute_not_exists(#lu) OR #lu < :now) AND (attribute_not_exists(#r) OR #r < :stale)"
    )
    return _update(account, call_id, crm, update, condition) is not None


def get_one(account: str, call_id: str, crm: str) -> dict[str, Any] | None:
    """One delivery item as stored (consistent), or None."""
    response = aws.dynamodb().get_item(TableName=_table(), Key=key(account, call_id, crm), ConsistentRead=True)
    item = response.get("Item")
    return from_item(item) if item else None


def count_parked(account: str, crm: str, state: str) -> int:
    """How many deliveries of one CRM are parked `state` (the index's keys only are counted)."""
    client = aws.dynamodb()
    request: dict[str, Any] = {
        "TableName": _table(),
        "IndexName": INDEX,
        "KeyConditionExpression": "dlv_pk = :q",
        "ExpressionAttributeValues": {":q": {"S": parked_key(state, account, crm)}},
        "Select": "COUNT",
    }
    total = 0
    while True:
        response = client.query(**request)
        total += int(response.get("Count", 0))
        if "LastEvaluatedKey" not in response:
            return total
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def _flags(flags: list[str]) -> set[str] | None:
    return set(flags) if flags else None  # DynamoDB has no empty sets: no flags, no attribute


def list_parked(account: str, crm: str, state: str = FAILED, limit: int = 1000) -> list[dict[str, Any]]:
    """Parked deliveries of one CRM (the index is KEYS_ONLY: the items are read by key)."""
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "IndexName": INDEX,
        "KeyConditionExpression": "dlv_pk = :q",
        "ExpressionAttributeValues": {":q": {"S": parked_key(state, account, crm)}},
    }
    keys = [{"pk": i["pk"], "sk": i["sk"]} for i in query_items(kwargs, at_most=limit)]
    return get_items(keys)


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
        ExpressionAttributeValues={":pk": {"S": call_pk(account, call_id)}, ":dlv": {"S": DELIVERY_PREFIX}},
        ConsistentRead=True,
    )
    return [from_item(i) for i in response.get("Items", [])]


def pending_realtime(account: str, call_id: str) -> list[str]:
    """The CRMs whose realtime delivery of the call is still pending and not held for its recording."""
    return [
        str(d["crm"])
        for d in of_call(account, call_id)
        if d.get("state") == PENDING and d.get("mode") == "realtime" and not d.get(RECORDING_WAIT)
    ]
