"""The one writer of calls: a source's final call (Cloud PBX history, telediscount `finished` /
`get_calls`, ccrm.pl `callHistory`), a live event (ringing, answered, ended) and the settling of a
call nobody answered, all into the one Calls item shape, then handed to handoff.call_stored.

Each PBX adapter maps its own payload to FinalCall or LiveEvent; nothing here knows a PBX. The
source's record is kept on the call under ONE attribute, `history_raw` (secrets removed by the
adapter), whichever source it came from.

Every source record is applied once: its marker (the EVT item of the call, chosen by the adapter:
one per distinct source record) is written in the same transaction as the call, so a
webhook, the reconciliation that recovers it and a backfill of the same call store it exactly once,
whichever comes first. Bulk imports (backfill --store-only) use `store_final_batch`: the same items,
written with batch writes after a batch read of the markers (store/calls.py does the DynamoDB part).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from callbridge.core import handoff, live, phones
from callbridge.core.accounts import Account
from callbridge.core.live import Live, LiveEvent
from callbridge.core.terms import Direction, Flag, Marker, MissedReason, Outcome, StartSource
from callbridge.infra import aws, clock
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.store import calls, open_calls
from callbridge.store.updates import Update

RAW_ATTRIBUTE = "history_raw"  # the source's record on the call item, for every source
# Set on a call recorded from its live events (what it was derived from: "events"); removed when
# the source's own final record corrects it.
DERIVED_ATTRIBUTE = "derived_from"


@dataclass(frozen=True)
class FinalCall:
    """A finished call as a source reports it, already in canonical terms."""

    call_id: str
    source: str
    marker: Marker
    direction: Direction
    outcome: Outcome
    phone: str  # E.164 key (or the raw text when it is not a number)
    phone_raw: str
    started_at: str  # UTC ISO Z
    start_source: StartSource
    duration: int = 0
    our_number: str | None = None
    user: str | None = None
    extension: str | None = None  # the user's internal number, when the source names it
    department: str | None = None  # the group the call rang, when the source names it
    source_status: str | None = None  # the source's own word for the outcome, kept as sent
    missed_reason: MissedReason | None = None  # why an unanswered call was not answered (None: answered)
    rating: str | None = None  # the caller's rating of the call, when the source has one
    recording_url: str | None = None  # the link the source gave (never with a key)
    flags: frozenset[str] = frozenset()
    raw: dict[str, Any] = field(default_factory=dict)  # the source record, secrets removed
    extra: dict[str, Any] = field(default_factory=dict)  # source-specific attributes (notes, waiting_time…)

    @property
    def stored_flags(self) -> frozenset[str]:
        """The flags the call is stored with: the adapter's, and `no_number` for a call without a
        client number, whichever source sent it (the CRM connectors decide what that means)."""
        if phones.is_number(self.phone_raw) or phones.is_number(self.phone):
            return self.flags
        return self.flags | {Flag.NO_NUMBER.value}

    @property
    def placed_to_a_number(self) -> bool:
        """An outgoing call of a known user to a number: it may answer a click-to-call (core/clicks.py)."""
        return self.direction == Direction.OUT and bool(self.user) and phones.is_number(self.phone)

    @property
    def fetch_recording(self) -> bool:
        """A recording link the recordings worker may fetch (a bad link is kept, flagged, unfetched)."""
        return bool(self.recording_url) and Flag.BAD_RECORDING_LINK not in self.flags

    def attributes(self, account: str, now_iso: str) -> dict[str, Any]:
        """The attributes of the CALL item this call sets (None values are not written)."""
        return {**self.fields(account, now_iso), RAW_ATTRIBUTE: calls.stored_raw(self.raw).text}

    def fields(self, account: str, now_iso: str) -> dict[str, Any]:
        """`attributes` without the source's record: store/calls.py apply_once bounds that and sets
        it itself, once for both the call and its marker."""
        return {
            "account": account,
            "call_id": self.call_id,
            "source": self.source,
            "direction": self.direction.value,
            "outcome": self.outcome.value,
            "missed_reason": self.missed_reason.value if self.missed_reason else None,
            "final": True,
            "user": self.user,
            "extension": self.extension,
            "department": self.department,
            "pbx_status": self.source_status,
            "rating": self.rating,
            "phone": self.phone,
            "phone_raw": self.phone_raw,
            "our_number": self.our_number,
            "duration": self.duration,
            "started_at": self.started_at,
            "start_source": self.start_source.value,
            "recording_url": self.recording_url,
            "updated_at": now_iso,
            "gsi1pk": account,
            "gsi1sk": f"{self.started_at}#{self.call_id}",
            **self.extra,
        }


def store_final(
    account: Account,
    call: FinalCall,
    *,
    deliver: bool = True,
    existing: Mapping[str, Any] | None = None,
    read_existing: bool = False,
    received: datetime | None = None,
    unless_final: bool = False,
) -> bool:
    """Store one final call once and hand it on. False when this source record was already stored
    (by the webhook, the reconciliation, the poller or a backfill).

    `existing`: the call item as read before; `read_existing`: read it here (a source that also
    reports live events). Then a call another path made final is not handed on again, and a repeat
    of the record re-hands the final call to delivery and re-queues the recording fetch while the
    recording has no state: the first hand-off may have failed after the call was stored, and the
    source's retry is the only chance left. Without it a repeat changes nothing. `received`: when
    the record arrived (now).

    A start the source could only estimate from its record's receipt (`receipt_minus_duration`)
    yields to the call's first event we received live (`first_event`): that one was timed as the
    phone rang, the estimate counts back from a record that may have come minutes late.

    A call recorded from its live events (settle_call, `derived_from`) is corrected in place by the
    source's record: same item, its values replaced, the flag dropped; never handed on again.
    `unless_final`: a record read back from the source (reconciliation) that must not overwrite a
    call another of the source's records already made final; it still corrects a derived one.
    """
    now_iso = clock.iso(received or clock.now())
    if read_existing:
        existing = calls.get_call(account.id, call.call_id) or {}
    if call.start_source is StartSource.RECEIPT_MINUS_DURATION:
        seen = existing if existing is not None else calls.get_call(account.id, call.call_id)
        if seen and seen.get("first_event_at"):
            call = replace(call, started_at=str(seen["first_event_at"]), start_source=StartSource.FIRST_EVENT)
    fields = call.fields(account.id, now_iso)
    update = Update().set(**fields)
    update.set_if_absent(created_at=now_iso, finalized_at=now_iso)
    # The call's derivation from events ends here, whichever record corrects it.
    update.remove(DERIVED_ATTRIBUTE)
    if existing is not None and existing.get(DERIVED_ATTRIBUTE):
        # The derived call's flags are replaced by the record's (ADD and DELETE of one attribute
        # cannot share an update); the events' talk time stays beside it (`events_duration`).
        update.set(corrected_at=now_iso)
        if call.stored_flags:
            update.set(flags=set(call.stored_flags))
        else:
            update.remove("flags")
    elif call.stored_flags:
        update.add_to_set("flags", *sorted(call.stored_flags))
    condition = None
    if unless_final:
        condition = "attribute_not_exists(#uf) OR #uf = :uf_no OR attribute_exists(#ud)"
        update.bind({"#uf": "final", "#ud": DERIVED_ATTRIBUTE}, uf_no=False)
    after = calls.apply_once(
        account.id, call.call_id, call.marker, now_iso, call.raw, update, condition, raw_attribute=RAW_ATTRIBUTE
    )
    applied = after is not None
    was_final = bool(existing and existing.get("final"))
    if applied and not was_final and call.placed_to_a_number:
        from callbridge.core import clicks

        clicks.follow(
            account, call.call_id, call.user or "", call.phone, call.started_at, call.outcome == Outcome.ANSWERED
        )
    if applied or existing is not None:
        handoff.call_stored(
            account,
            call.call_id,
            newly_final=applied and not was_final,
            # A repeat re-queues the fetch only while the recording has no state (see above).
            fetch_recording=call.fetch_recording and (applied or not (existing or {}).get("recording_state")),
            deliver=deliver,
            repeat_of_final=not applied and was_final,
            source=call.source,
            outcome=call.outcome.value,
            reason=call.missed_reason.value if call.missed_reason else None,
        )
    return applied


def store_imported(account: Account, batch: Sequence[FinalCall], *, deliver: bool = True, workers: int = 8) -> int:
    """Store the final calls of a source that only its importer ever writes (ccrm.pl: no webhooks,
    no live state); returns how many were new. The call item itself is the gate - one conditional
    put each, created only if absent - and the markers follow in batch writes. As exact as a
    transaction and much cheaper: only the put that creates an item hands its call on. A crash
    before the markers leaves calls without them; the next read of those records re-adds them (the
    puts then fail: nothing is handed on twice).
    """
    now_iso = clock.iso(clock.now())

    def put(call: FinalCall) -> bool:
        return calls.put_call_if_absent(account.id, call.call_id, _whole_item(account.id, call, now_iso))

    unique = list({c.call_id: c for c in batch}.values())
    with ThreadPoolExecutor(max_workers=workers) as pool:
        created = [call for call, new in zip(unique, pool.map(put, unique), strict=True) if new]
    calls.batch_put(calls.marker_item(account.id, c.call_id, c.marker, now_iso, c.raw) for c in unique)
    for call in created:
        _hand_off(account, call, deliver)
    return len(created)


def store_final_batch(
    account: Account, batch: Sequence[FinalCall], *, deliver: bool = False, without_items: bool = False
) -> int:
    """Store many final calls with batch reads and writes (backfill); returns how many were new.

    The calls whose marker exists are skipped, so a second run changes nothing. Unlike store_final
    this is not atomic against a webhook storing the same call at the same instant: that call's item
    is then written twice with the same content. Bulk imports of past days do not meet live calls.
    `without_items`: the caller just read that none of these calls has an item, so none has a
    marker either (a marker is written after its call): the marker read is skipped.
    """
    unique = list({c.call_id: c for c in batch}.values())
    known = set() if without_items else calls.marked(account.id, [(c.call_id, c.marker) for c in unique])
    fresh = [c for c in unique if (c.call_id, c.marker.sk) not in known]
    now_iso = clock.iso(clock.now())
    items: list[dict[str, Any]] = []
    # The marker goes after the call: an interrupted batch leaves at worst a call without its
    # marker, which the next run writes again (same content), never a marker without its call.
    for call in fresh:
        items.append(calls.call_item(account.id, call.call_id, _whole_item(account.id, call, now_iso)))
    items.extend(calls.marker_item(account.id, c.call_id, c.marker, now_iso, c.raw) for c in fresh)
    calls.batch_put(items)
    for call in fresh:
        _hand_off(account, call, deliver)
    return len(fresh)


def _hand_off(account: Account, call: FinalCall, deliver: bool) -> None:
    """A call this source made final for the first time goes to the recording and delivery workers."""
    handoff.call_stored(
        account,
        call.call_id,
        newly_final=True,
        fetch_recording=call.fetch_recording,
        deliver=deliver,
        source=call.source,
        outcome=call.outcome.value,
        reason=call.missed_reason.value if call.missed_reason else None,
    )


def _whole_item(account: str, call: FinalCall, now_iso: str) -> dict[str, Any]:
    """The attributes of a call item created whole (not updated) by a bulk import."""
    attributes = call.attributes(account, now_iso)
    # Its record's marker, as apply_once would have added it: a later repeat is refused at once.
    attributes.update(
        created_at=now_iso, finalized_at=now_iso, **{calls.MARKS_ATTRIBUTE: {calls.mark_of(call.marker.sk)}}
    )
    if calls.stored_raw(call.raw).truncated:
        attributes["raw_truncated"] = True  # as apply_once flags it on the other paths
    if call.stored_flags:
        attributes["flags"] = set(call.stored_flags)
    return attributes


def marked(account: str, wanted: Sequence[tuple[str, Marker]]) -> set[tuple[str, str]]:
    """The (call id, marker sk) pairs of `wanted` already recorded: a cheap batch read that lets a
    poller re-reading an overlapping window skip what it stored before (apply_once still decides)."""
    return calls.marked(account, wanted)


# -- live events and the missed-call settle ------------------------------------------------------


def record_live(account: Account, event: LiveEvent, received: datetime | None = None) -> bool:
    """Write what a live event says, the one writer of both: the live state of the call (who rings,
    who answered), then its cards (core/live.py). False when this event was already applied; a
    repeat opens no second card. An event without a marker of its own has no state to change (a
    card the source's final record closes): only its card is queued. A call whose phones all
    stopped ringing unanswered is queued to be settled. `received`: when the event arrived (now).

    Events are facts about a leg, whatever order they arrive in (a PBX retry brings an INCOMING
    after its CANCELLED): a phone that stopped, answered or ended is kept in `stopped`, and its ring
    arriving later does not make it ring again (store/calls.py unring_if_stopped). Every event may
    be the one that completes what a settle needs, so each one looks whether to queue it."""
    if event.marker is None:
        _card(account, event)
        return True
    applied = _apply_live(account.id, event, event.marker, received or clock.now())
    if applied:
        _card(account, event)
    return applied


def _card(account: Account, event: LiveEvent) -> None:
    if event.stage is not None and event.users:
        live.publish(account, event)


def _apply_live(account: str, event: LiveEvent, marker: Marker, received: datetime) -> bool:
    now_iso = clock.iso(received)
    first = event.at or now_iso  # the PBX's time of the call's first event, else its receipt
    update = Update().set(account=account, call_id=event.call_id, source=event.source, last_event_at=now_iso)
    update.set_if_absent(created_at=now_iso, phone=event.phone, phone_raw=event.phone_raw)
    flags = set(event.flags)
    if not (phones.is_number(event.phone_raw) or phones.is_number(event.phone)):
        # A withheld caller id: the call is kept like a final record without a number (FinalCall).
        flags.add(Flag.NO_NUMBER.value)
    if flags:
        update.add_to_set("flags", *sorted(flags))
    if event.our_number:
        update.set_if_absent(our_number=event.our_number)
    if event.extra:
        update.set_if_absent(**event.extra)
    update.set(extension=event.extension or None, department=event.department or None)
    if event.change is Live.ARRIVED:
        update.set_if_absent(first_event_at=first, direction=Direction.IN.value)
    elif event.change is Live.PLACED:
        update.set_if_absent(first_event_at=first, direction=Direction.OUT.value, user=event.user, dialled_at=now_iso)
    elif event.change is Live.RINGING:
        update.set_if_absent(first_event_at=first, direction=event.direction or Direction.IN.value)
        update.add_to_set("ringing", event.user).add_to_set("users_rang", event.user)
        # The order the phones rang (a set has none): a missed call's last resort owner is the
        # first mapped user rung (docs/missed-calls.md). A user rung again is appended again.
        update.append_to_list("ring_order", event.user)
    elif event.change is Live.DIALING:
        update.set_if_absent(first_event_at=first).set(direction=Direction.OUT.value, user=event.user)
    elif event.change is Live.ANSWERED:
        update.set(accepted_by=event.user, user=event.user, accepted_at=now_iso)
        update.remove_from_set("ringing", event.user).add_to_set("stopped", event.user)
    elif event.change in (Live.STOPPED_RINGING, Live.ENDED):
        update.remove_from_set("ringing", event.user).add_to_set("stopped", event.user)
        if event.change is Live.ENDED:
            update.set(completed_at=now_iso)
    elif event.change is Live.TRANSFERRED:
        update.add_to_set("transferred_to", event.user)
    after = calls.apply_once(account, event.call_id, marker, now_iso, dict(event.raw), update)
    applied = after is not None
    if applied and event.follow_until is not None:
        open_calls.mark_open(account, event.source, event.call_id, now_iso, int(event.follow_until.timestamp()))
    settles = applied and event.change in (Live.RINGING, Live.ANSWERED, Live.STOPPED_RINGING, Live.ENDED)
    # A ring is watched even when it is a repeat: its first delivery may have been stored and then
    # failed before it was watched (the PBX retries what was not answered 2xx).
    if settles or event.change is Live.RINGING:
        call = after if after is not None else calls.get_call(account, event.call_id)
        # Only a phone whose stop came first is taken off again: a write refused for its
        # condition is billed like one that is done, and most rings have no stop before them.
        if applied and event.change is Live.RINGING and call and event.user in (call.get("stopped") or ()):
            calls.unring_if_stopped(account, event.call_id, event.user)
            call = calls.get_call(account, event.call_id)
        if call is not None and event.change is Live.RINGING:
            _watch_ringing(account, event.call_id, call)
        if call is not None and settles:
            _schedule_settle(account, event.call_id, call=call)
    return applied


def store_rating(
    account: Account, call_id: str, source: str, marker: Marker, rating: str, raw: Mapping[str, Any]
) -> bool:
    """The caller's rating of a call, sent by its source after the call; False for a repeat. It is
    no event of the call: its live state and its settle do not move."""
    now_iso = clock.iso(clock.now())
    update = Update().set(account=account.id, call_id=call_id, rating=rating, updated_at=now_iso)
    update.set_if_absent(source=source, created_at=now_iso)
    return calls.apply_once(account.id, call_id, marker, now_iso, dict(raw), update) is not None


# How long the ringing sweep's entry of a call outlives its first ring: long past the maximum
# ringing age, so that a sweep that failed for days still finds the call; then it expires by itself.
RINGING_WATCH_DAYS = 7


def _watch_ringing(account: str, call_id: str, call: Mapping[str, Any]) -> None:
    """List an incoming call that rings, under its first ring, for the ringing sweep
    (features/ringing_sweep.py): if the stop of a phone is lost, nothing else would ever settle it.
    A repeat writes the same entry."""
    first = call.get("first_event_at")
    if not first or call.get("final") or call.get("accepted_by"):
        return
    if call.get("direction", Direction.IN.value) != Direction.IN.value:
        return
    expires = clock.parse_iso(str(first)) + timedelta(days=RINGING_WATCH_DAYS)
    open_calls.mark_open(account, open_calls.RINGING, call_id, str(first), int(expires.timestamp()))


def _unanswered_and_silent(call: Mapping[str, Any]) -> bool:
    return (
        not call.get("final")
        and not call.get("accepted_by")
        and not call.get("ringing")
        and call.get("direction", Direction.IN.value) == Direction.IN.value
        and bool(call.get("first_event_at"))
    )


def _answered_and_ended(call: Mapping[str, Any]) -> bool:
    """Taken and hung up, but no final record yet: the source's record may still come."""
    return (
        not call.get("final")
        and bool(call.get("accepted_by"))
        and bool(call.get("accepted_at"))
        and bool(call.get("completed_at"))
    )


def _schedule_settle(
    account: str, call_id: str, delay: int | None = None, *, call: Mapping[str, Any] | None = None
) -> None:
    """Queue the settle of a call that may be final by now: unanswered and silent (missed after
    MISSED_CALL_SETTLE_SECONDS), or answered and ended (recorded from its events if its final
    record has not come after HISTORY_QUIET_SECONDS). SQS delays a message 15 minutes at most; a
    longer wait is a chain of messages (settle_call queues the next one). `call`: as just read.

    A call that still seems to ring gets no message: the ringing sweep settles it once it rang past
    its maximum ringing age (one scheduled run for all such calls, not a delayed message each)."""
    call = call if call is not None else calls.get_call(account, call_id)
    if call is None:
        return
    settings = get_settings()
    if _unanswered_and_silent(call):
        wait = settings.missed_call_settle_seconds
    elif _answered_and_ended(call):
        wait = settings.history_quiet_seconds
    else:
        return
    if not settings.settle_queue_url:
        logger().error("SETTLE_QUEUE_URL is not set: cannot settle a call that may be final")
        return
    aws.sqs().send_message(
        QueueUrl=settings.settle_queue_url,
        MessageBody=json.dumps({"account": account, "call_id": call_id}),
        DelaySeconds=min(wait if delay is None else delay, 900),
    )


@dataclass(frozen=True, slots=True)
class SettleResult:
    # "missed" | "derived" | "answered" | "ringing" | "final" | "waiting" | "unknown_call" | "not_incoming"
    # | "changed"
    status: str


def settle_call(account: str, call_id: str, *, overdue: bool = False) -> SettleResult:
    """Decide whether a call whose phones all stopped ringing was missed, or whether an answered
    call that ended is to be recorded from its events.

    Hunting groups ring one phone after another, so an empty `ringing` set is not yet the end of
    the call: it is missed only after MISSED_CALL_SETTLE_SECONDS without a new event. An answered
    call is final when its source's record comes; only if none came HISTORY_QUIET_SECONDS after
    its last event is it recorded from the events (`_derive_answered`).

    `overdue`: the ringing sweep's call (features/ringing_sweep.py), for a call listed as ringing
    past the maximum ringing age. A call a phone still seems to ring without an event for
    MAX_RINGING_SECONDS is settled as missed all the same, with the reason `unknown` (the stop of a
    phone was lost); any other call is decided as a settle message decides it, except that nothing
    is queued: the call's own settle messages are on their way.
    """
    call = calls.get_call(account, call_id)
    if call is None:
        return SettleResult("unknown_call")
    if call.get("final"):
        return SettleResult("final")
    if _answered_and_ended(call):
        return _derive_answered(account, call_id, call, overdue=overdue)
    if call.get("accepted_by"):
        return SettleResult("answered")
    now = clock.now()
    last_event = str(call.get("last_event_at") or call.get("first_event_at"))
    quiet = int((now - clock.parse_iso(last_event)).total_seconds())
    reason = MissedReason.NO_ANSWER
    if call.get("ringing"):
        if not overdue or quiet < get_settings().max_ringing_seconds:
            return SettleResult("ringing")
        if call.get("direction", Direction.IN.value) != Direction.IN.value or not call.get("first_event_at"):
            return SettleResult("not_incoming")
        reason = MissedReason.UNKNOWN  # we never learnt how it ended
    elif overdue and not _unanswered_and_silent(call):
        return SettleResult("not_incoming")  # an outgoing call (or one without a ring) is never missed
    else:
        remaining = get_settings().missed_call_settle_seconds - quiet
        if remaining > 0:
            if not overdue:
                _schedule_settle(account, call_id, delay=remaining)
            return SettleResult("waiting")
    first = str(call["first_event_at"])
    update = Update().set(
        direction=Direction.IN.value,
        outcome=Outcome.MISSED.value,
        final=True,
        # Every phone stopped ringing (or rang past the maximum age) and nobody took the call.
        missed_reason=reason.value,
        duration=0,
        started_at=first,
        start_source=StartSource.FIRST_EVENT.value,
        updated_at=clock.iso(now),
        gsi1pk=account,
        gsi1sk=f"{first}#{call_id}",
    )
    update.set_if_absent(finalized_at=clock.iso(now))
    still_ringing_at = None
    if reason is MissedReason.UNKNOWN:
        update.remove("ringing")
        still_ringing_at = str(call.get("last_event_at") or "") or None
    recorded = calls.finalize_if_unanswered(account, call_id, update, still_ringing_at=still_ringing_at)
    if recorded:
        source = str(call.get("source") or "") or None
        handoff.settled(account, call_id, source=source, outcome=Outcome.MISSED.value, reason=reason.value)
    return SettleResult("missed" if recorded else _raced(account, call_id))


def _raced(account: str, call_id: str) -> str:
    """What a call is after the write that would have made it missed found it changed: made final
    (its record came), answered, or alive (a new event: `changed`, to be looked at again)."""
    call = calls.get_call(account, call_id) or {}
    if call.get("final"):
        return "final"
    return "answered" if call.get("accepted_by") else "changed"


def _derive_answered(account: str, call_id: str, call: Mapping[str, Any], *, overdue: bool = False) -> SettleResult:
    """Record an answered call from its events: its final record (Cloud PBX `history`) did not come
    within HISTORY_QUIET_SECONDS of its last event (a lost webhook, a PBX that never sends it).

    Events carry no time stamps, so the talk time is the time between the receipts of the answer
    and of the end, and the start the receipt of the first event. The call is flagged
    `derived_from_events` and carries `derived_from`; the source's record, whenever it comes (its
    webhook, the reconciliation, a backfill), corrects the same item in place (store_final) and is
    not handed on again: the CRMs keep what they were sent (docs/delivery.md).
    """
    now = clock.now()
    last = clock.parse_iso(str(call.get("last_event_at") or call["completed_at"]))
    remaining = get_settings().history_quiet_seconds - int((now - last).total_seconds())
    if remaining > 0:
        if not overdue:
            _schedule_settle(account, call_id, delay=remaining)
        return SettleResult("waiting")
    accepted = clock.parse_iso(str(call["accepted_at"]))
    completed = clock.parse_iso(str(call["completed_at"]))
    talk = max(0, int((completed - accepted).total_seconds()))
    first = str(call.get("first_event_at") or call["accepted_at"])
    update = Update().set(
        direction=str(call.get("direction") or Direction.IN.value),
        outcome=Outcome.ANSWERED.value,
        final=True,
        duration=talk,
        events_duration=talk,
        started_at=first,
        start_source=StartSource.FIRST_EVENT.value,
        updated_at=clock.iso(now),
        gsi1pk=account,
        gsi1sk=f"{first}#{call_id}",
        **{DERIVED_ATTRIBUTE: "events"},
    )
    update.set_if_absent(finalized_at=clock.iso(now), user=str(call["accepted_by"]))
    update.add_to_set("flags", Flag.DERIVED_FROM_EVENTS.value)
    if not calls.finalize_if_not_final(account, call_id, update):
        return SettleResult("final")  # the final record came meanwhile: it wins
    source = str(call.get("source") or "") or None
    handoff.settled(account, call_id, source=source, outcome=Outcome.ANSWERED.value)
    logger().info("answered call recorded from its events", extra={"call_id": call_id, "duration": talk})
    return SettleResult("derived")
