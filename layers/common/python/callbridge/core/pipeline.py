"""What happens after a call is stored, whatever source it came from (Cloud PBX, telediscount,
ccrm.pl): one place, so that every source's calls flow through the same recording and delivery code.
"""

from __future__ import annotations

import json

from callbridge.infra import aws
from callbridge.infra.observability import logger, metric
from callbridge.infra.settings import get_settings


def call_stored(
    account: str,
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
    if newly_final and source:
        metric("CallsIngested", Source=source, Outcome=outcome or "unknown", Reason=reason or "answered")
    if (newly_final or repeat_of_final) and deliver:
        from callbridge.core.handoff import call_final

        # Deliveries before the fetch: a recording fetched at once finds them waiting
        # (`recording_settled`); the other way round it found none, and the realtime delivery
        # waited for the drain's grace period.
        call_final(account, call_id, recording_pending=fetch_recording)
    if fetch_recording:
        queue_recording_fetch(account, call_id)


def recording_settled(account: str, call_id: str) -> None:
    """The recording of a call was stored or given up: realtime deliveries that waited for it go now.
    A failure here delays them until the drain's grace period, never loses them."""
    from callbridge.core.handoff import recording_settled as settled

    try:
        settled(account, call_id)
    except Exception:
        logger().exception("could not queue the realtime deliveries of a call whose recording settled")


def queue_recording_fetch(account: str, call_id: str) -> None:
    queue_url = get_settings().recording_queue_url
    if not queue_url:
        logger().error("RECORDING_QUEUE_URL is not set: the recording of this call is not fetched")
        return
    aws.sqs().send_message(QueueUrl=queue_url, MessageBody=json.dumps({"account": account, "call_id": call_id}))
