"""history / event / rating: validate, then record through the core. Loaded only when one of them
arrives, so the contact path never pays for it."""

from __future__ import annotations

from typing import Any

from callbridge.core.accounts import Account
from callbridge.infra import clock
from callbridge.infra.observability import bind, logger, redact
from callbridge.pbx.cloudpbx import ingest, notifications
from callbridge.pbx.cloudpbx.users import pbx_user

# The event types a live call card follows (callbridge.core.live): (stage, direction, answered).
LIVE: dict[str, tuple[Any, Any, bool]] = {"INCOMING": ("ringing", "in", False), "OUTGOING": ("ringing", "out", False),
                                          "COMPLETED": ("ended", None, True), "CANCELLED": ("ended", None, False)}  # fmt: skip


def dispatch(account: Account, cmd: str, fields: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
    raw = redact(fields)
    bind(account=account.id, call_id=fields.get("callid", "")[:256] or None, cmd=cmd)
    if cmd == "history":
        applied = ingest.record_history(account, notifications.parse_history(fields, raw))
    elif cmd == "event":
        event = notifications.parse_event(fields, raw)
        received = clock.now()  # the event's time, on the call and on its card
        applied = ingest.record_event(account, event, received)
        if applied and event.type in LIVE:
            from callbridge.core import live

            stage, direction, answered = LIVE[event.type]
            user = pbx_user(account, event.user)
            found = live.event(account, stage, event.callid, event.phone, (user,), direction=direction,
                               our_number=event.diversion, answered=answered, at=received)  # fmt: skip
            live.publish(account, found)
    else:
        applied = ingest.record_rating(account, notifications.parse_rating(fields, raw))
    if not applied:
        logger().info("repeated webhook ignored")
    return 200, None
