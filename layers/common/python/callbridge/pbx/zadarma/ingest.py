"""Zadarma notifications written through the core (core/record.py, the one writer of final calls,
live events and their cards): an end notification is a FinalCall, every other one a LiveEvent.
Loaded when a notification arrives, never at the webhook module's import.

A recording may be announced by `NOTIFY_RECORD` alone (an end that said `is_recorded=0`, or a
`NOTIFY_RECORD` that came before its end): whichever of the two arrives second starts the fetch
(`announced_recording`), once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from callbridge.core import handoff
from callbridge.core.accounts import Account
from callbridge.core.record import FinalCall, record_live, store_final
from callbridge.infra import clock
from callbridge.infra.observability import logger
from callbridge.pbx.zadarma.calls import (
    RECORD_ID,
    direction_of,
    ended_card,
    final_call,
    is_end,
    live_event,
    recording_link,
)
from callbridge.pbx.zadarma.protocol import RECORD
from callbridge.store import calls
from callbridge.store.updates import Update

_UNAVAILABLE = "unavailable"  # the recordings worker's recording_state for a fetch it gave up


def record_notification(
    account: Account, event: str, fields: Mapping[str, str], received: datetime | None = None
) -> bool:
    """Store one verified notification; False when it was stored before (a repeat changes nothing)."""
    now = received or clock.now()
    if not is_end(event):
        applied = record_live(account, live_event(account, event, fields, now), now)
        logger().info("zadarma notification stored" if applied else "zadarma notification repeated, ignored")
        if event == RECORD and fields.get("call_id_with_rec", "").strip():
            announced_recording(account, fields["pbx_call_id"], fields["call_id_with_rec"].strip())
        return applied
    call = final_call(account, direction_of(event), fields, now)
    applied = store_final(account, call, read_existing=True, received=now)
    logger().info(
        "zadarma call stored" if applied else "zadarma call already stored, ignored",
        extra={"outcome": call.outcome.value, "flags": sorted(call.flags)},
    )
    if applied:
        _close_cards(account, call)
    recording_announced_before(account, call)
    return applied


def recording_announced_before(account: Account, call: FinalCall) -> bool:
    """A final record that names no recording (an end with `is_recorded=0`, a statistics line):
    the fetch starts if a NOTIFY_RECORD that came first left its recording id on the call."""
    if call.recording_url is not None:
        return False
    record_id = str((calls.get_call(account.id, call.call_id) or {}).get(RECORD_ID) or "")
    return bool(record_id) and announced_recording(account, call.call_id, record_id)


def announced_recording(account: Account, call_id: str, record_id: str) -> bool:
    """Start the fetch of a recording the call's final record did not name (`NOTIFY_RECORD`): the
    record request by its id becomes the call's recording link and the fetch is queued. True when
    this started it.

    The conditional write is the gate that makes it once: only a final call (its deliveries wait
    for the recording while it is young: features/delivery) without a link, or whose fetch gave up
    (the file was not saved yet when the end's fetch asked: the vendor advises waiting for this
    notification), takes it. A repeat, or a fetch the end notification queued, finds the link set.
    """
    update = Update().set(
        recording_url=recording_link(account, {"call_id_with_rec": record_id, "pbx_call_id": call_id})
    )
    update.set(updated_at=clock.iso(clock.now())).remove("recording_state", "recording_error")
    update.bind({"#zf": "final", "#zu": "recording_url", "#zs": "recording_state"}, zf_yes=True, zs_gone=_UNAVAILABLE)
    condition = "#zf = :zf_yes AND (attribute_not_exists(#zu) OR #zs = :zs_gone)"
    if not calls.update_call(account.id, call_id, update, condition):
        return False
    handoff.queue_recording_fetch(account.id, call_id)
    logger().info("zadarma recording announced by NOTIFY_RECORD: fetch queued", extra={"call_id": call_id})
    return True


def _close_cards(account: Account, call: FinalCall) -> None:
    """The end of the call's cards: for the user who talked, else for every extension it rang. A
    card never fails the notification: the call is stored whatever happens here."""
    try:
        users: tuple[str, ...] = (call.user,) if call.user else ()
        if not users:
            item = calls.get_call(account.id, call.call_id) or {}
            users = tuple(sorted(str(u) for u in item.get("users_rang") or ()))
        if users:
            record_live(account, ended_card(call, users))
    except Exception:
        logger().exception("could not close the cards of a zadarma call")
