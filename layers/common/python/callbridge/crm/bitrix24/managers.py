"""Bitrix24's responsible manager for a phone number (`telephony.externalCall.searchCrmEntities`,
docs/bitrix24.md): the first CRM entity (contact, company, lead) that has the number, its name and
the user it is assigned to, mapped back through `bitrix24_user_id` to a PBX user. The routing
feature applies its time budget, cache and the managers' statuses (callbridge.features.routing)."""

from __future__ import annotations

from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings
from callbridge.crm.base import Responsible, with_secrets
from callbridge.crm.bitrix24.api import Bitrix24Api, open_api
from callbridge.crm.bitrix24.settings import Bitrix24Settings
from callbridge.crm.bitrix24.users import find_user
from callbridge.infra.http import RetryPolicy

# One client per way in and warm Lambda: a new httpx client costs a TLS context every time.
_apis: dict[tuple[str, str, float], Bitrix24Api] = {}


def lookup_responsible(account: Account, settings: CrmSettings, e164: str, timeout_s: float) -> Responsible:
    assert isinstance(settings, Bitrix24Settings)
    filled = with_secrets(account.id, settings)
    assert isinstance(filled, Bitrix24Settings)
    # Keyed by the way in (the webhook, or the app's portal and client secret), not the account:
    # a changed account file makes a new client.
    app = filled.app
    way = (f"{app.portal}|{app.client_id}|{app.client_secret.get_secret_value()}" if app is not None
           else filled.webhook_url.get_secret_value() if filled.webhook_url is not None else "")  # fmt: skip
    key = (account.id, way, timeout_s)
    api = _apis.get(key)
    if api is None:
        api = _apis[key] = open_api(account.id, filled, timeout_s=timeout_s, retry=RetryPolicy(attempts=1))
    found = api.call("telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": e164})
    entity = next((e for e in found if isinstance(e, dict)), None) if isinstance(found, list) else None
    if entity is None:
        return Responsible()
    name = str(entity.get("NAME") or "").strip() or None
    assigned = _assigned(entity)
    user = find_user(account.settings.users, assigned)
    return Responsible(user.pbx_user if user else None, name, assigned)


def _assigned(entity: dict[str, Any]) -> str | None:
    by = entity.get("ASSIGNED_BY")
    value = by.get("ID") if isinstance(by, dict) else None
    value = value if value not in (None, "") else entity.get("ASSIGNED_BY_ID")
    return str(value) if value not in (None, "") else None
