"""What happens after a call is stored, whatever source it came from (Cloud PBX, telediscount,
ccrm.pl): one step, so that every source's calls flow through the same recording and delivery code.

Light on purpose (no CRM connector, no CRM client), because it runs inside the PBX webhooks. The
account comes with the call: the webhook (or poller, importer) that read it hands the typed
`Account` on, so one invocation reads it once. Its typed settings (parsed once per warm container)
hold every default, e.g. each CRM's delivery mode.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from callbridge.core.accounts import Account, UnknownAccount, get_account
from callbridge.infra import aws, clock
from callbridge.infra.observability import logger, metric
from callbridge.infra.settings import get_settings
from callbridge.store import deliveries as store

if TYPE_CHECKING:
    from callbridge.core.config import CrmSettings


def crms_of(account: Account) -> list[CrmSettings]:
    """The CRMs the account's calls are delivered to (no parsing for an account without any)."""
    return list(account.settings.crms) if account.has_crms else []


def call_stored(
    account: Account,
    call_id: str,
    *,
    newly_final: bool,
    fetch_recording: bool,
    deliver: bool = True,
    repeat_of_final: bool = False,
    source: str | None = None,
    outcome: str | None = None,
    reason: str | None = None,
) -> None:
    """Hand a stored call to the workers; the webhook or poller that stored it never waits for them.

    `newly_final`: this write made the call final (first history, missed-call settle, first import).
    `fetch_recording`: the call has a recording link that has not been fetched yet.
    `deliver`: False for a store-only import (`callbridge backfill --store-only`): the call is kept
    and its recording fetched, but it is never delivered to the CRMs.
    `repeat_of_final`: a source sent again what made the call final. The hand-off to delivery is done
    again (creating deliveries is idempotent): if it failed the first time, the source's retry is the
    only chance to hand the call on, and a repeat must not be ignored for it.
    `source`, `outcome`, `reason`: the call's, for the CallsIngested metric of a newly final call
    (`Reason`: why an unanswered call was missed; `answered` for an answered one).
    """
    try:
        if (newly_final or repeat_of_final) and deliver:
            call_final(account, call_id, recording_pending=fetch_recording)
        if fetch_recording:
            queue_recording_fetch(account.id, call_id)
    finally:
        # Counted once, when the call became final, even if its hand-off failed: the source's
        # retry is a repeat, which is not counted again.
        if newly_final and source:
            _ingested(source, outcome, reason)


def settled(account_id: str, call_id: str, *, source: str | None, outcome: str, reason: str | None = None) -> None:
    """A call the settle worker made final (missed, or recorded from its events): its queue message
    names the account, read here once. An account removed meanwhile gets nothing delivered."""
    try:
        account = get_account(account_id)
    except UnknownAccount:
        if source:
            _ingested(source, outcome, reason)
        logger().error("a final call of an unknown account: not delivered", extra={"call_id": call_id})
        return
    call_stored(
        account, call_id, newly_final=True, fetch_recording=False, source=source, outcome=outcome, reason=reason
    )


def _ingested(source: str, outcome: str | None, reason: str | None) -> None:
    metric("CallsIngested", Source=source, Outcome=outcome or "unknown", Reason=reason or "answered")


def call_final(account: Account, call_id: str, *, recording_pending: bool = False) -> int:
    """Create the deliveries of a call that has just become final; returns how many were new.

    Realtime CRMs get a queue message now, whether or not the call's recording is stored yet (the
    delivery worker decides how the recording follows), except a CRM that downloads the recording
    on receipt while it is still to be fetched (`recording_pending`): that delivery is created held
    (`recording_wait`), and the recording's settling queues it (recording_settled). The items of
    realtime deliveries are due only after DELIVERY_REALTIME_GRACE_SECONDS, so the drain sends them
    only if the queue path did not."""
    account_id = account.id
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
        held = mode == "realtime" and recording_pending and crm.downloads_recording_on_receipt
        if store.create(account_id, call_id, crm.name, crm.kind, mode, due, now, recording_wait=held):
            created += 1
            if mode == "realtime" and not held:
                realtime.append(crm.name)
        else:
            existed = True
    if existed:
        # A repeated hand-off (the source's retry after a failure here): the messages of realtime
        # deliveries that are still pending may never have been sent. Sending one again is harmless:
        # a delivered or leased delivery can't be claimed twice.
        realtime = store.pending_realtime(account_id, call_id)
    if realtime:
        send_messages(account_id, call_id, realtime)
    return created


def recording_settled(account_id: str, call_id: str, *, stored: bool) -> None:
    """The recording of a call was stored (`stored`) or given up. A delivery held for it (a
    realtime CRM that downloads the file on receipt, `recording_wait`) is queued now, with or without
    it. A delivery that went without it to a CRM that takes a recording only as a file waits for it
    (`recording_follows`): now it is pending again for the recording alone and queued (once it is
    pending, the drain sends it if the queue does not), or, given up, waits no more. Raises when the
    store fails: the recordings worker's message is then retried, and a recording found stored
    calls this again."""
    deliveries = store.of_call(account_id, call_id)
    held = [str(d["crm"]) for d in deliveries if d.get(store.RECORDING_WAIT) and d.get("state") == store.PENDING]
    woken = [crm for crm in held if store.wake_for_recording(account_id, call_id, crm)]
    if woken:
        try:
            send_messages(account_id, call_id, woken)
        except Exception:
            logger().exception("could not queue a delivery held for its recording: the drain sends it")
    waiting = [str(d["crm"]) for d in deliveries if d.get(store.RECORDING_FOLLOWS)]
    if not waiting:
        return
    if not stored:
        for crm in waiting:
            store.forget_recording(account_id, call_id, crm)
        return
    due = clock.now() + timedelta(seconds=get_settings().delivery_realtime_grace_s)
    reopened = [crm for crm in waiting if store.reopen_for_recording(account_id, call_id, crm, due)]
    if reopened:
        try:
            send_messages(account_id, call_id, reopened)
        except Exception:
            logger().exception("could not queue a recording update: the drain sends it when due")


def queue_recording_fetch(account_id: str, call_id: str) -> None:
    queue_url = get_settings().recording_queue_url
    if not queue_url:
        logger().error("RECORDING_QUEUE_URL is not set: the recording of this call is not fetched")
        return
    aws.sqs().send_message(QueueUrl=queue_url, MessageBody=json.dumps({"account": account_id, "call_id": call_id}))


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
