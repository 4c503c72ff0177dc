"""The settle worker: one queued `{account, call_id}` whose phones all stopped ringing → the call
missed, recorded from its events, or left to wait (core/record.py `settle_call` decides).

CallSettleFunction (functions/call_settle.py) hands each SQS message's body to `handle_message`; the
message is what `settle_call` queues for itself when a call must wait longer."""

from __future__ import annotations

import json

from callbridge.core.record import SettleResult, settle_call
from callbridge.infra.observability import bind, logger


def handle_message(body: str) -> SettleResult:
    message = json.loads(body)
    account, call_id = str(message["account"]), str(message["call_id"])
    bind(account=account, call_id=call_id)
    result = settle_call(account, call_id)
    logger().info("settled", extra={"account": account, "call_id": call_id, "result": result.status})
    return result
