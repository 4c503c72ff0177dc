"""Cloud PBX webhooks as canonical records (docs/cloudpbx.md): `history` becomes a FinalCall, an
`event` a LiveEvent (its live state and its call card), a `rating` the call's rating, all written by
core/record.py.

One call item per callid collects everything: the events (who rang, who answered), the history
(the final record) and the settle decision for calls nobody answered. Because history and the
event path write the same item, a missed call is one call whichever way the PBX reports it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.live import Live, LiveEvent, Stage
from callbridge.core.phones import normalize
from callbridge.core.record import FinalCall, record_live, store_final, store_rating
from callbridge.core.terms import Direction, Flag, Marker, MissedReason, Outcome, StartSource
from callbridge.infra import clock
from callbridge.infra.observability import logger
from callbridge.pbx.cloudpbx.notifications import EventIn, HistoryIn, RatingIn, parse_start
from callbridge.pbx.cloudpbx.protocol import KIND
from callbridge.pbx.cloudpbx.users import pbx_user

SOURCE = KIND

# history `status`, case-insensitive, by direction (docs/cloudpbx.md).
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


# Why an unanswered history was not answered, by its `status` (docs/cloudpbx.md): `NotAllowed` is
# the PBX's own refusal (a barred direction, a blocked number), `NotAvailable` / `NotFound` mean no
# one could take it (nobody on line, no route: how the PBX reports calls outside its hours).
_REASONS = {
    "missed": MissedReason.NO_ANSWER,
    "cancel": MissedReason.NO_ANSWER,
    "cancelled": MissedReason.NO_ANSWER,
    "noanswer": MissedReason.NO_ANSWER,
    "busy": MissedReason.BUSY,
    "notallowed": MissedReason.REJECTED,
    "notavailable": MissedReason.UNAVAILABLE,
    "notfound": MissedReason.UNAVAILABLE,
}


def history_reason(status: str) -> MissedReason | None:
    """None for an answered call; `unknown` for an unanswered status the PBX had no word for."""
    key = status.replace("_", "").replace(" ", "").lower()
    if key == "success":
        return None
    return _REASONS.get(key, MissedReason.UNKNOWN)


def _is_department(user: str) -> bool:
    return user.startswith("g_")


def final_call(account: Account, history: HistoryIn, now: datetime) -> FinalCall:
    """The canonical final call of a history. Its start: the PBX's `start`, else the receipt of the
    history minus the duration, which core/record.py replaces by the receipt of the call's first
    event when the events came."""
    flags: set[str] = set()
    start = parse_start(history.start_raw)
    if history.start_raw and start is None:
        flags.add(Flag.START_UNPARSED)
    if start is not None:
        started_at, start_source = clock.iso(start), StartSource.PBX
    else:
        started_at = clock.iso(now - timedelta(seconds=history.duration))
        start_source = StartSource.RECEIPT_MINUS_DURATION

    phone = normalize(history.phone, account.phone_region)
    our_number = normalize(history.diversion, account.phone_region).key if history.diversion else None
    if phone.e164 is None:
        flags.add(Flag.PHONE_UNPARSED)
    link = history.link
    if link is not None and not link.lower().startswith(("https://", "http://")):
        flags.add(Flag.BAD_RECORDING_LINK)
    if _is_department(history.user):
        flags.add(Flag.GROUP_USER)
    user = pbx_user(account, history.user)
    return FinalCall(
        call_id=history.callid,
        source=SOURCE,
        marker=Marker("history", history.direction, user),
        direction=Direction(history.direction),
        outcome=history_outcome(history.direction, history.status),
        phone=phone.key,
        phone_raw=phone.raw,
        started_at=started_at,
        start_source=start_source,
        duration=history.duration,
        our_number=our_number,
        user=user,
        extension=history.ext,
        department=history.department,
        source_status=history.status,
        missed_reason=history_reason(history.status),
        rating=history.rating,
        recording_url=link,
        flags=frozenset(flags),
        raw=history.raw,
    )


def record_history(account: Account, history: HistoryIn) -> bool:
    """Store the final record of a call. False when this history was already stored; a repeat still
    re-hands the call on (core/record.py store_final, `read_existing`)."""
    now = clock.now()
    call = final_call(account, history, now)
    applied = store_final(account, call, read_existing=True, received=now)
    logger().info(
        "history stored" if applied else "history repeated, ignored",
        extra={"outcome": call.outcome.value, "start_source": call.start_source.value, "flags": sorted(call.flags)},
    )
    return applied


# Cloud PBX event types in canonical terms; a type newer than docs/cloudpbx.md is kept on the
# timeline and changes nothing else.
_LIVE = {
    "INCOMING": Live.RINGING,
    "OUTGOING": Live.DIALING,
    "ACCEPTED": Live.ANSWERED,
    "CANCELLED": Live.STOPPED_RINGING,
    "COMPLETED": Live.ENDED,
    "TRANSFERRED": Live.TRANSFERRED,
}
# The event types a call card follows: (stage, direction, answered).
_CARDS: dict[str, tuple[Stage, Any, bool]] = {"INCOMING": ("ringing", "in", False), "OUTGOING": ("ringing", "out", False),
                                              "COMPLETED": ("ended", None, True), "CANCELLED": ("ended", None, False)}  # fmt: skip


def live_event(account: Account, event: EventIn, received: datetime) -> LiveEvent:
    """The one canonical event of a webhook `event`. Events carry no time: `received` (now) is the
    event's time, on the call and on its card (docs/protocols/cloudpbx.md)."""
    phone = normalize(event.phone, account.phone_region)
    user = pbx_user(account, event.user)
    stage, direction, answered = _CARDS.get(event.type, (None, None, False))
    if event.type == "INCOMING" and event.direction in ("in", "out"):
        direction = event.direction  # the PBX's own word on the ring, kept on the call too
    return LiveEvent(
        stage=stage,
        call_id=event.callid,
        phone=phone.key,
        users=(user,),
        direction=direction,
        our_number=normalize(event.diversion, account.phone_region).key if event.diversion else None,
        answered=answered,
        at=clock.iso(received),
        change=_LIVE.get(event.type, Live.OTHER),
        source=SOURCE,
        marker=Marker("event", event.type, user),
        phone_raw=phone.raw,
        extension=event.ext,
        department=event.department,
        raw=event.raw,
    )


def record_event(account: Account, event: EventIn, received: datetime | None = None) -> bool:
    """Update the live state of a call and its cards. False when this event was already applied."""
    live = live_event(account, event, received or clock.now())
    if live.change is Live.OTHER:
        logger().warning("unknown event type kept on the timeline", extra={"type": event.type})
    return record_live(account, live, received)


def record_rating(account: Account, rating: RatingIn) -> bool:
    marker = Marker("rating", "rating", rating.user or "")
    return store_rating(account, rating.callid, SOURCE, marker, rating.rating, rating.raw)
