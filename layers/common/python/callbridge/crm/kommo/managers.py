"""amoCRM's contact for a phone number (`GET /api/v4/contacts?query=`, docs/kommo.md, "Lookup"):
its name and responsible user, mapped back through `kommo_user_id` to a PBX user. amoCRM matches
numbers by their last ten digits; the query searches every field, so a contact is taken only when
one of its phones ends in the same ten digits. The routing feature applies its time budget, cache
and the managers' statuses (callbridge.features.routing)."""

from __future__ import annotations

from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings
from callbridge.crm.base import Responsible, with_secrets
from callbridge.crm.kommo.api import KommoApi, open_api
from callbridge.crm.kommo.calls import last10
from callbridge.crm.kommo.settings import KommoSettings
from callbridge.crm.kommo.users import find_user
from callbridge.infra.http import RetryPolicy

# One client per way in and warm Lambda: a new httpx client costs a TLS context every time.
_apis: dict[tuple[str, str, float], KommoApi] = {}


def phones(contact: dict[str, Any]) -> list[str]:
    """The contact's phone numbers (its PHONE field's values)."""
    found: list[str] = []
    for field in contact.get("custom_fields_values") or []:
        if isinstance(field, dict) and field.get("field_code") == "PHONE":
            found.extend(str(v.get("value") or "") for v in field.get("values") or [] if isinstance(v, dict))
    return found


def find_contact(api: KommoApi, e164: str) -> dict[str, Any] | None:
    """The first contact with this number (by its last ten digits); None when amoCRM has none."""
    digits = last10(e164)
    if len(digits) < 10:
        return None
    answer = api.request("GET", "/api/v4/contacts", params={"query": digits, "limit": 10})
    for contact in api.embedded(answer, "contacts", "GET", "/api/v4/contacts"):
        if any(last10(p) == digits for p in phones(contact)):
            return contact
    return None


def lookup_responsible(account: Account, settings: CrmSettings, e164: str, timeout_s: float) -> Responsible:
    assert isinstance(settings, KommoSettings)
    filled = with_secrets(account.id, settings)
    assert isinstance(filled, KommoSettings)
    # Keyed by the way in (the token, or the app's id and secret), not the account alone: a changed
    # account file makes a new client.
    app = filled.app
    way = (f"{filled.base_url}|{app.client_id}|{app.client_secret.get_secret_value()}" if app is not None
           else f"{filled.base_url}|{filled.token.get_secret_value() if filled.token else ''}")  # fmt: skip
    key = (account.id, way, timeout_s)
    api = _apis.get(key)
    if api is None:
        api = _apis[key] = open_api(account.id, filled, timeout_s=timeout_s, retry=RetryPolicy(attempts=1))
    contact = find_contact(api, e164)
    if contact is None:
        return Responsible()
    name = str(contact.get("name") or "").strip() or None
    owner = contact.get("responsible_user_id")
    assigned = str(owner) if owner not in (None, "", 0) else None
    user = find_user(account.settings.users, assigned)
    return Responsible(user.pbx_user if user else None, name, assigned)
