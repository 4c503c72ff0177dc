"""retailCRM live call cards (`POST /api/v5/telephony/call/event`, docs/retailcrm.md): `in` when a
manager's phone starts ringing (the call card), `out` when he dials, `hangup` when his leg ends.

The canonical events come from callbridge.core.live, queued by the PBX webhooks; the delivery worker
hands each message here. A card is useful for seconds, so a failed send is logged and dropped.
"""

from __future__ import annotations

from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings, UserMapping
from callbridge.core.live import LiveEvent, still_ringing
from callbridge.core.phones import is_number
from callbridge.crm.retailcrm.settings import RetailCrmSettings
from callbridge.crm.retailcrm.users import retailcrm_code, retailcrm_user_id
from callbridge.infra.observability import logger


def event_type(live: LiveEvent) -> str | None:
    """retailCRM's event type of a canonical event; None for a moment retailCRM shows no card for."""
    if live.stage == "ringing" and live.direction is not None:
        return live.direction  # `in` / `out`
    if live.stage == "ended":
        return "hangup"
    return None


def build(users: list[UserMapping], settings: RetailCrmSettings, live: LiveEvent) -> dict[str, Any] | None:
    """The retailCRM event of a canonical one, or None when there is nothing to show (a moment
    retailCRM has no card for, or no concerned PBX user with a retailCRM code: nobody's card)."""
    kind = event_type(live)
    mappings = [m for user in live.users for m in users if m.pbx_user == user]
    codes = [code for code in (retailcrm_code(m) for m in mappings) if code]
    if kind is None or not codes:
        return None
    if not is_number(live.phone):
        # A withheld caller id: retailCRM's card is the customer its `phone` finds, and the event
        # requires the phone; there is no card to show (docs/retailcrm.md), and none is attempted.
        return None
    event: dict[str, Any] = {"phone": live.phone, "type": kind, "codes": codes, "callExternalId": live.call_id}
    user_ids = [user_id for m in mappings if (user_id := retailcrm_user_id(m)) is not None and retailcrm_code(m)]
    if user_ids:
        event["userIds"] = user_ids
    if kind == "hangup":
        event["hangupStatus"] = "answered" if live.answered else "cancel"
    if live.our_number:
        event["externalPhone"] = live.our_number
    if settings.site:
        event["site"] = settings.site
    return event


def send_live(account: Account, settings: CrmSettings, message: dict[str, Any]) -> bool:
    """Send one queued card message; False (logged) when retailCRM did not take it. A message of
    the older format carries retailCRM's event itself (`event`) instead of the canonical `live`."""
    from callbridge.crm.retailcrm.api import RetailCrmApi
    from callbridge.infra.http import HttpError, RetryPolicy

    assert isinstance(settings, RetailCrmSettings)
    legacy = message.get("event")
    if isinstance(legacy, dict):
        event: dict[str, Any] | None = legacy
    else:
        live = LiveEvent.from_dict(message.get("live") or {})
        if live.stage == "ringing" and not still_ringing(account.id, live):
            return True  # answered or ended while the card waited in the queue: never shown late
        event = build(account.settings.users, settings, live)
    if event is None:
        return True  # nobody's card to show
    api = RetailCrmApi(settings.base_url, settings.api_key.get_secret_value(), timeout_s=5.0,
                       retry=RetryPolicy(attempts=2, backoff_initial_s=0.2, backoff_max_s=0.5, jitter_s=0.1),
                       trusted_hosts=settings.trusted_hosts)  # fmt: skip
    try:
        api.call_event(event)
    except HttpError as exc:
        logger().warning("retailCRM call event not delivered", extra={"error": str(exc), "type": event.get("type")})
        return False
    finally:
        api.close()
    return True
