"""retailCRM realtime call events (`POST /api/v5/telephony/call/event`, specs/retailcrm.md): `in`
when a manager's phone starts ringing (the call card), `out` when he dials, `hangup` when his leg
ends — driven by the Cloud PBX `event` webhook, only for an event applied for the first time.

The webhook only queues a message (DeliveryQueue, a few ms); DeliveryFunction sends it. A card is
useful for seconds, so a failed send is logged and dropped, never retried later; the call itself is
delivered by the upload path whatever happens here.
"""

from __future__ import annotations

import json
from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.handoff import crms_of
from callbridge.core.phones import normalize
from callbridge.infra import aws
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings

KIND = "call_event"
TYPES = {"INCOMING": "in", "OUTGOING": "out", "COMPLETED": "hangup", "CANCELLED": "hangup"}
HANGUP_STATUS = {"COMPLETED": "answered", "CANCELLED": "cancel"}


def build(account: Account, crm: dict[str, Any], kind: str, user: str, phone: str, callid: str,
          diversion: str | None) -> dict[str, Any] | None:  # fmt: skip
    """The retailCRM event of one Cloud PBX event, or None when there is nothing to show (an
    unknown type, or a PBX user without a retailCRM code: nobody's card to open)."""
    event_type = TYPES.get(kind)
    mapping = next((u for u in account.config.get("users") or [] if u.get("pbx_user") == user), None)
    if event_type is None or mapping is None:
        return None
    code = mapping.get("retailcrm_code") or mapping.get("extension")
    if not code:
        return None
    number = normalize(phone, account.phone_region)
    event: dict[str, Any] = {"phone": number.key, "type": event_type, "codes": [str(code)], "callExternalId": callid}
    if mapping.get("retailcrm_user_id") is not None:
        event["userIds"] = [int(mapping["retailcrm_user_id"])]
    if kind in HANGUP_STATUS:
        event["hangupStatus"] = HANGUP_STATUS[kind]
    if diversion:
        event["externalPhone"] = normalize(diversion, account.phone_region).key
    if crm.get("site"):
        event["site"] = crm["site"]
    return event


def queue_call_events(account: Account, kind: str, user: str, phone: str, callid: str, diversion: str | None) -> None:
    """Called by the event webhook after it applied an event; never raises (the webhook's answer
    to the PBX must not depend on a CRM's call card)."""
    try:
        crms = [c for c in crms_of(account) if c.get("kind") == "retailcrm" and c.get("call_events", True)]
        if not crms or kind not in TYPES:
            return
        queue_url = get_settings().delivery_queue_url
        entries: list[Any] = []
        for i, crm in enumerate(crms):
            event = build(account, crm, kind, user, phone, callid, diversion)
            if event is not None:
                body = {"kind": KIND, "account": account.id, "crm": crm["name"], "event": event}
                entries.append({"Id": str(i), "MessageBody": json.dumps(body)})
        if entries and queue_url:
            aws.sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
    except Exception:
        logger().exception("could not queue a retailCRM call event")


def send(account: Account, crm: dict[str, Any], event: dict[str, Any]) -> bool:
    """Send one queued event; False (logged) when retailCRM did not take it."""
    from callbridge.crm.registry import settings_model
    from callbridge.crm.retailcrm.api import RetailCrmApi
    from callbridge.crm.retailcrm.settings import RetailCrmSettings
    from callbridge.infra import secrets
    from callbridge.infra.http import HttpError, RetryPolicy

    settings = settings_model(crm, secrets.account_secrets(account.id))
    assert isinstance(settings, RetailCrmSettings)
    api = RetailCrmApi(settings.base_url, settings.api_key.get_secret_value(), timeout_s=5.0,
                       retry=RetryPolicy(attempts=2, backoff_initial_s=0.2, backoff_max_s=0.5, jitter_s=0.1))  # fmt: skip
    try:
        api.call_event(event)
    except HttpError as exc:
        logger().warning("retailCRM call event not delivered", extra={"error": str(exc), "type": event.get("type")})
        return False
    finally:
        api.close()
    return True
