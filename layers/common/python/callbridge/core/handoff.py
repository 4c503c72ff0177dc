"""The hand-off from the webhook and import paths to delivery: light on purpose (no CRM connector,
no CRM client), because it runs inside the PBX webhooks. It reads the account's typed settings (parsed
once per warm container), whose models hold every default, e.g. each CRM's delivery mode."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from callbridge.core.accounts import Account, UnknownAccount, get_account
from callbridge.infra import aws, clock
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.store import deliveries as store

if TYPE_CHECKING:
    from callbridge.core.config import CrmSettings


def crms_of(account: Account) -> list[CrmSettings]:
    """The CRMs the account's calls are delivered to (no parsing for an account without any)."""
    return list(account.settings.crms) if account.has_crms else []


def call_final(account_id: str, call_id: str, *, recording_pending: bool) -> int:
    """Create the deliveries of a call that has just become final; returns how many were new.

    Realtime CRMs get a queue message now, or, while the recording is being fetched, when it is
    stored or given up (`recording_settled`): the CRM then gets the recording link with the call.
    Their items are due only after DELIVERY_REALTIME_GRACE_SECONDS, so the drain sends them only
    if the queue path did not."""
    try:
        account = get_account(account_id)
    except UnknownAccount:
        logger().error("a final call of an unknown account: not delivered", extra={"call_id": call_id})
        return 0
    crms = crms_of(account)
    if not crms:
        return 0
    settings = get_settings()
    now = clock.now()
    created = 0
    realtime: list[str] = []
    existed = False
    for crm in crms:
        mode = crm.mode
        due = now + timedelta(seconds=settings.delivery_realtime_grace_s) if mode == "realtime" else now
        if store.create(account_id, call_id, crm.name, crm.kind, mode, due, now):
            created += 1
            if mode == "realtime":
                realtime.append(crm.name)
        else:
            existed = True
    if existed and not recording_pending:
        # A repeated hand-off (the source's retry after a failure here): the messages of realtime
        # deliveries that are still pending may never have been sent. Sending one again is harmless:
        # a delivered or leased delivery can't be claimed twice.
        realtime = _pending_realtime(account_id, call_id)
    if realtime and not recording_pending:
        send_messages(account_id, call_id, realtime)
    return created


def _pending_realtime(account_id: str, call_id: str) -> list[str]:
    return [
        str(d["crm"])
        for d in store.of_call(account_id, call_id)
        if d.get("state") == store.PENDING and d.get("mode") == "realtime"
    ]


def recording_settled(account_id: str, call_id: str) -> None:
    """The recording of a call was stored or given up: its realtime deliveries may go now."""
    waiting = _pending_realtime(account_id, call_id)
    if waiting:
        send_messages(account_id, call_id, waiting)


def send_messages(account_id: str, call_id: str, crms: list[str], *, delay_s: int = 0) -> None:
    queue_url = get_settings().delivery_queue_url
    if not queue_url:
        # Not lost: the pending items are due after the grace period and the drain sends them.
        logger().error("DELIVERY_QUEUE_URL is not set: realtime deliveries wait for the drain")
        return
    entries: list[Any] = [
        {
            "Id": str(i),
            "MessageBody": json.dumps({"account": account_id, "call_id": call_id, "crm": crm}),
            "DelaySeconds": max(0, min(delay_s, 900)),
        }
        for i, crm in enumerate(crms)
    ]
    aws.sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
