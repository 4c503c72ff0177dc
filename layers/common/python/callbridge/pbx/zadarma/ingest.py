"""Zadarma notifications written through the core (core/record.py, the one writer of final calls,
live events and their cards): an end notification is a FinalCall, every other one a LiveEvent.
Loaded when a notification arrives, never at the webhook module's import."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from callbridge.core.accounts import Account
from callbridge.core.record import FinalCall, record_live, store_final
from callbridge.infra import clock
from callbridge.infra.observability import logger
from callbridge.pbx.zadarma.calls import direction_of, ended_card, final_call, is_end, live_event
from callbridge.store import calls


def record_notification(
    account: Account, event: str, fields: Mapping[str, str], received: datetime | None = None
) -> bool:
    """Store one verified notification; False when it was stored before (a repeat changes nothing)."""
    now = received or clock.now()
    if not is_end(event):
        applied = record_live(account, live_event(account, event, fields, now), now)
        logger().info("zadarma notification stored" if applied else "zadarma notification repeated, ignored")
        return applied
    call = final_call(account, direction_of(event), fields, now)
    applied = store_final(account, call, read_existing=True, received=now)
    logger().info(
        "zadarma call stored" if applied else "zadarma call already stored, ignored",
        extra={"outcome": call.outcome.value, "flags": sorted(call.flags)},
    )
    if applied:
        _close_cards(account, call)
    return applied


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
