"""amoCRM's call notification (docs/kommo.md, "Notifications"): while a call rings, the managers
whose phones ring get amoCRM's pop-up - `POST /api/v2/events` with `type: phone_call`, the number
and their amoCRM user ids. amoCRM finds the card by the number itself (or offers to create a contact
for an unknown one), and the pop-up goes by itself: answered and ended legs send nothing.

A notification is useful for seconds: a failed send is logged and dropped (callbridge.core.live),
and one that waited in the queue past the ringing is not sent at all."""

from __future__ import annotations

from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings
from callbridge.core.live import LiveEvent, still_ringing
from callbridge.core.phones import is_number
from callbridge.crm.base import with_secrets
from callbridge.crm.kommo.api import open_api
from callbridge.crm.kommo.settings import KommoSettings
from callbridge.crm.kommo.users import user_id
from callbridge.infra.http import HttpError, RetryPolicy
from callbridge.infra.observability import logger

PATH = "/api/v2/events"


def _user_ids(account: Account, live: LiveEvent) -> list[int]:
    mappings = [m for pbx_user in live.users for m in account.settings.users if m.pbx_user == pbx_user]
    return [found for m in mappings if (found := user_id(m)) is not None]


def send_live(account: Account, settings: CrmSettings, message: dict[str, Any]) -> bool:
    assert isinstance(settings, KommoSettings)
    live = LiveEvent.from_dict(message.get("live") or {})
    if live.stage != "ringing":
        return True  # amoCRM's pop-up has no "hide": it goes by itself
    ids = _user_ids(account, live)
    if not ids or not is_number(live.phone):
        return True  # nobody to notify, or no number to find a card by
    if not still_ringing(account.id, live):
        return True  # answered or ended while the notification waited in the queue: never late
    filled = with_secrets(account.id, settings)
    assert isinstance(filled, KommoSettings)
    api = open_api(account.id, filled, timeout_s=5.0,
                   retry=RetryPolicy(attempts=2, backoff_initial_s=0.2, backoff_max_s=0.5, jitter_s=0.1))  # fmt: skip
    try:
        answer = api.request(
            "POST", PATH, body={"add": [{"type": "phone_call", "phone_number": live.phone, "users": ids}]}
        )
        api.embedded(answer, "items", "POST", PATH)
        return True
    except HttpError as exc:
        logger().warning("amoCRM call notification not delivered", extra={"error": str(exc)})
        return False
    finally:
        api.close()
