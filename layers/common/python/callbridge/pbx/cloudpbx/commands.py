"""history / event / rating: validate, then record through the core (core/record.py, the one
writer of final calls, live events and their cards). Loaded only when one of them
arrives, so the contact path never pays for it."""

from __future__ import annotations

from typing import Any

from callbridge.core.accounts import Account
from callbridge.infra import clock
from callbridge.infra.observability import bind_more, logger, redact
from callbridge.pbx.cloudpbx import ingest, notifications


def dispatch(account: Account, cmd: str, fields: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
    raw = redact(fields)
    bind_more(call_id=fields.get("callid", "")[:256] or None, cmd=cmd)
    if cmd == "history":
        applied = ingest.record_history(account, notifications.parse_history(fields, raw))
    elif cmd == "event":
        applied = ingest.record_event(account, notifications.parse_event(fields, raw), clock.now())
    else:
        applied = ingest.record_rating(account, notifications.parse_rating(fields, raw))
    if not applied:
        logger().info("repeated webhook ignored")
    return 200, None
