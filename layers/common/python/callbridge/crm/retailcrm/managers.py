"""retailCRM's responsible manager for a phone number (`GET /api/v5/telephony/manager?phone=…`,
docs/retailcrm.md), mapped back through `code` / `userId` to a PBX user. retailCRM names a manager
only while he is free (its own rule); the routing feature also applies the status retailCRM pushed to
our `changeUserStatusUrl`."""

from __future__ import annotations

from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings
from callbridge.crm.base import Responsible, secret, with_secrets
from callbridge.crm.retailcrm.api import RetailCrmApi, RetailCrmError
from callbridge.crm.retailcrm.settings import RetailCrmSettings
from callbridge.crm.retailcrm.users import find_user
from callbridge.infra.http import RetryPolicy

# One client per CRM and warm Lambda: a new httpx client costs a TLS context every time.
_apis: dict[tuple[str, str, frozenset[str]], RetailCrmApi] = {}


def lookup_responsible(account: Account, settings: CrmSettings, e164: str, timeout_s: float) -> Responsible:
    """Empty when retailCRM names nobody (an unknown client, or the manager is not free)."""
    assert isinstance(settings, RetailCrmSettings)
    api_key = secret(with_secrets(account.id, settings, fast=True), "api_key")  # a ringing phone waits
    key = (settings.base_url, api_key, settings.trusted_hosts)  # the trust is the account's
    api = _apis.get(key)
    if api is None:
        api = _apis[key] = RetailCrmApi(
            settings.base_url,
            api_key,
            timeout_s=timeout_s,
            retry=RetryPolicy(attempts=1),
            trusted_hosts=settings.trusted_hosts,
        )
    body = _manager_answer(api, e164)
    customer = body.get("customer")
    contact_name = (customer_name(customer) or None) if isinstance(customer, dict) else None
    manager = body.get("manager")
    if not isinstance(manager, dict):
        return Responsible(contact_name=contact_name)
    manager_id = str(manager["id"]) if manager.get("id") is not None else None
    code = str(manager["code"]) if manager.get("code") not in (None, "") else None
    user = find_user(account.settings.users, code, manager_id)
    return Responsible(user.pbx_user if user else None, contact_name, manager_id, code)


def _manager_answer(api: RetailCrmApi, e164: str) -> dict[str, Any]:
    # The whole answer, not only `manager`: the customer's name is the contact name (RetailCrmApi's
    # manager() keeps only the manager).
    try:
        body: dict[str, Any] = api._call("GET", "/api/v5/telephony/manager", params={"phone": e164, "details": "1"})
    except RetailCrmError as error:
        if error.status == 404:
            return {}
        raise
    return body


def customer_name(customer: dict[str, Any]) -> str:
    parts = [str(customer.get(k) or "").strip() for k in ("firstName", "patronymic", "lastName")]
    full = " ".join(p for p in parts if p)
    return full or str(customer.get("nickName") or customer.get("name") or "").strip()
