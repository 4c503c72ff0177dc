"""Turning Cloud PBX webhooks into the canonical call (specs/cloudpbx.md).

One call item per callid collects everything: the events (who rang, who answered), the history
(the final record) and the settle decision for calls nobody answered. Because history and the
event path write the same item, a missed call is one call whichever way the PBX reports it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from callbridge.core import pipeline
from callbridge.core.accounts import Account
from callbridge.core.model import Direction, Flag, Outcome, StartSource
from callbridge.core.phones import normalize
from callbridge.infra import aws, clock
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.pbx.cloudpbx.protocol import EventIn, HistoryIn, RatingIn, parse_start
from callbridge.store import calls
from callbridge.store.updates import Update

SOURCE = "cloudpbx"

# history `status`, case-insensitive, by direction (specs/cloudpbx.md, "Beyond the seed").
_STATUS = {
    "success": Outcome.ANSWERED,
    "busy": Outcome.BUSY,
    "notavailable": Outcome.NOT_AVAILABLE,
    "notallowed": Outcome.NOT_ALLOWED,
    "notfound": Outcome.NOT_FOUND,
}
_UNANSWERED = frozenset({"missed", "cancel", "cancelled", "noanswer"})


def history_outcome(direction: str, status: str) -> Outcome:
    key = status.replace("_", "").replace(" ", "").lower()
    if key in _UNANSWERED:
        return Outcome.MISSED if direction == Direction.IN else Outcome.NO_ANSWER
    return _STATUS.get(key, Outcome.UNKNOWN)


def _is_department(user: str) -> bool:
    return user.startswith("g_")


def _listing_keys(account: str, call_id: str, started_at: str) -> dict[str, str]:
    return {"gsi1pk": account, "gsi1sk": f"{started_at}#{call_id}"}


def record_history(account: Account, history: HistoryIn) -> bool:
    """Store the final record of a call. False when this history was already stored."""
    now = clock.now()
    existing = calls.get_call(account.id, history.callid) or {}
    flags: set[str] = set()

    start = parse_start(history.start_raw)
    if history.start_raw and start is None:
        flags.add(Flag.START_UNPARSED)
    if start is not None:
        started_at, start_source = clock.iso(start), StartSource.PBX
    elif existing.get("first_event_at"):
        started_at, start_source = str(existing["first_event_at"]), StartSource.FIRST_EVENT
    else:
        started_at = clock.iso(now - timedelta(seconds=history.duration))
        start_source = StartSource.RECEIPT_MINUS_DURATION

    phone = normalize(history.phone, account.phone_region)
    if phone.e164 is None:
        flags.add(Flag.PHONE_UNPARSED)
    our_number = normalize(history.diversion, account.phone_region).key if history.diversion else None
    link = history.link
    fetchable = link is not None and link.lower().startswith(("https://", "http://"))
    if link is not None and not fetchable:
        flags.add(Flag.BAD_RECORDING_LINK)
    if _is_department(history.user):
        flags.add(Flag.GROUP_USER)
    outcome = history_outcome(history.direction, history.status)

    update = (
        Update()
        .set(
            account=account.id,
            call_id=history.callid,
            source=SOURCE,
            direction=history.direction,
            outcome=outcome.value,
            pbx_status=history.status,
            final=True,
            user=history.user,
            extension=history.ext,
            department=history.department,
            phone=phone.key,
            phone_raw=phone.raw,
            our_number=our_number,
            duration=history.duration,
            started_at=started_at,
            start_source=start_source.value,
            recording_url=link,
            rating=history.rating,
            history_raw=json.dumps(history.raw, ensure_ascii=False, sort_keys=True),
            updated_at=clock.iso(now),
            **_listing_keys(account.id, history.callid, started_at),
        )
        .set_if_absent(created_at=clock.iso(now), finalized_at=clock.iso(now))
    )
    if flags:
        update.add_to_set("flags", *sorted(flags))
    marker = calls.Marker("history", history.direction, history.user)
    applied = calls.apply_once(account.id, history.callid, marker, clock.iso(now), history.raw, update)
    logger().info(
        "history stored" if applied else "history repeated, ignored",
        extra={"outcome": outcome.value, "start_source": start_source.value, "flags": sorted(flags)},
    )
    # A repeat re-queues the fetch while the recording has no state yet: the first send may have
    # failed after the call was stored (the PBX then retried). The worker skips stored recordings.
    pipeline.call_stored(
        account.id,
        history.callid,
        newly_final=applied and not existing.get("final"),
        fetch_recording=fetchable and (applied or not existing.get("recording_state")),
        repeat_of_final=not applied and bool(existing.get("final")),
        source=SOURCE,
        outcome=outcome.value,
    )
    return applied


def record_event(account: Account, event: EventIn) -> bool:
    """Update the live state of a call. False when this event was already applied."""
    now = clock.now()
    now_iso = clock.iso(now)
    phone = normalize(event.phone, account.phone_region)
    update = Update().set(account=account.id, call_id=event.callid, source=SOURCE, last_event_at=now_iso)
    update.set_if_absent(created_at=now_iso, phone=phone.key, phone_raw=phone.raw)
    if event.diversion:
        update.set_if_absent(our_number=normalize(event.diversion, account.phone_region).key)
    if event.ext:
        update.set(extension=event.ext)
    if event.department:
        update.set(department=event.department)

    kind = event.type
    if kind == "INCOMING":
        update.set_if_absent(first_event_at=now_iso, direction=event.direction or Direction.IN.value)
        update.add_to_set("ringing", event.user).add_to_set("users_rang", event.user)
    elif kind == "OUTGOING":
        update.set_if_absent(first_event_at=now_iso).set(direction=Direction.OUT.value, user=event.user)
    elif kind == "ACCEPTED":
        update.set(accepted_by=event.user, user=event.user, accepted_at=now_iso)
        update.remove_from_set("ringing", event.user)
    elif kind in ("CANCELLED", "COMPLETED"):
        update.remove_from_set("ringing", event.user)
        if kind == "COMPLETED":
            update.set(completed_at=now_iso)
    elif kind == "TRANSFERRED":
        update.add_to_set("transferred_to", event.user)
    else:
        # A type newer than our spec: keep it on the timeline, change nothing else.
        logger().warning("unknown event type kept on the timeline", extra={"type": kind})

    marker = calls.Marker("event", kind, event.user)
    applied = calls.apply_once(account.id, event.callid, marker, now_iso, event.raw, update)
    if applied and kind in ("CANCELLED", "COMPLETED"):
        _schedule_settle_if_unanswered(account.id, event.callid)
    return applied


def record_rating(account: Account, rating: RatingIn) -> bool:
    now_iso = clock.iso(clock.now())
    update = Update().set(account=account.id, call_id=rating.callid, rating=rating.rating, updated_at=now_iso)
    update.set_if_absent(source=SOURCE, created_at=now_iso)
    marker = calls.Marker("rating", "rating", rating.user or "")
    return calls.apply_once(account.id, rating.callid, marker, now_iso, rating.raw, update)


def _unanswered_and_silent(call: dict[str, object]) -> bool:
    return (
        not call.get("final")
        and not call.get("accepted_by")
        and not call.get("ringing")
        and call.get("direction", Direction.IN.value) == Direction.IN.value
        and bool(call.get("first_event_at"))
    )


def _schedule_settle_if_unanswered(account: str, call_id: str, delay: int | None = None) -> None:
    call = calls.get_call(account, call_id)
    if call is None or not _unanswered_and_silent(call):
        return
    settings = get_settings()
    if not settings.settle_queue_url:
        logger().error("SETTLE_QUEUE_URL is not set: cannot settle a possibly missed call")
        return
    aws.sqs().send_message(
        QueueUrl=settings.settle_queue_url,
        MessageBody=json.dumps({"account": account, "call_id": call_id}),
        DelaySeconds=settings.missed_call_settle_seconds if delay is None else delay,
    )


@dataclass(frozen=True, slots=True)
class SettleResult:
    status: str  # "missed" | "answered" | "ringing" | "final" | "waiting" | "unknown_call"


def settle_call(account: str, call_id: str) -> SettleResult:
    """Decide whether a call whose phones all stopped ringing was missed.

    Hunting groups ring one phone after another, so an empty `ringing` set is not yet the end of
    the call: it is missed only after MISSED_CALL_SETTLE_SECONDS without a new event.
    """
    call = calls.get_call(account, call_id)
    if call is None:
        return SettleResult("unknown_call")
    if call.get("final"):
        return SettleResult("final")
    if call.get("accepted_by"):
        return SettleResult("answered")
    if call.get("ringing"):
        return SettleResult("ringing")
    settle = get_settings().missed_call_settle_seconds
    now = clock.now()
    last = clock.parse_iso(str(call.get("last_event_at") or call.get("first_event_at")))
    remaining = settle - int((now - last).total_seconds())
    if remaining > 0:
        _schedule_settle_if_unanswered(account, call_id, delay=min(remaining, 900))
        return SettleResult("waiting")
    first = str(call["first_event_at"])
    update = Update().set(
        direction=Direction.IN.value,
        outcome=Outcome.MISSED.value,
        final=True,
        duration=0,
        started_at=first,
        start_source=StartSource.FIRST_EVENT.value,
        updated_at=clock.iso(now),
        **_listing_keys(account, call_id, first),
    )
    update.set_if_absent(finalized_at=clock.iso(now))
    recorded = _finalize_missed(account, call_id, update)
    if recorded:
        pipeline.call_stored(
            account, call_id, newly_final=True, fetch_recording=False, source=SOURCE, outcome=Outcome.MISSED.value
        )
    return SettleResult("missed" if recorded else "final")


def _finalize_missed(account: str, call_id: str, update: Update) -> bool:
    # Conditional on the state we decided on, so a late ACCEPTED or a history that raced us wins.
    for attr, alias in (("final", "#cf"), ("accepted_by", "#ca"), ("ringing", "#cr")):
        update.names[alias] = attr
    update.values[":cfalse"] = {"BOOL": False}
    return calls.update_call(
        account,
        call_id,
        update,
        condition="(attribute_not_exists(#cf) OR #cf = :cfalse) AND attribute_not_exists(#ca) "
        "AND attribute_not_exists(#cr)",
    )
