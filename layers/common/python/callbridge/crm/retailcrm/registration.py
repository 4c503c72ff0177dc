"""retailCRM telephony module registration (docs/clicktocall.md, "retailCRM module registration"):
`POST /api/v5/integration-modules/{code}/edit` creates the module or, when one with that code exists,
changes it - so running it again updates and never duplicates.

`clientId` goes at the top level (API v5) and inside `integrations.telephony` too. `logo` and
`accountUrl` point at the deployment's own static answers (callbridge.edge.static): the logo SVG
(retailCRM takes module logos as SVG) and a page about this integration for this account.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from callbridge.core.accounts import Account, get_account
from callbridge.core.config import STORED_SECRET, CrmSettings, UserMapping
from callbridge.crm.base import secret, with_secrets
from callbridge.crm.retailcrm.settings import RetailCrmSettings
from callbridge.crm.retailcrm.users import retailcrm_code, retailcrm_user_id

MODULE_NAME = "CallBridge"


class RegistrationError(RuntimeError):
    """The account has no retailCRM to register with, or lacks what the module needs."""


def module_urls(base_url: str, account_id: str) -> dict[str, str]:
    """The module's `logo` and `accountUrl` (served by functions/health.py, callbridge.edge.static)."""
    base = base_url.rstrip("/")
    return {"logo": f"{base}/v1/retailcrm/logo.svg", "accountUrl": f"{base}/v1/{account_id}/retailcrm/about"}


def callback_urls(base_url: str, account_id: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    return {
        "makeCallUrl": f"{base}/v1/{account_id}/retailcrm/make-call",
        "changeUserStatusUrl": f"{base}/v1/{account_id}/retailcrm/user-status",
    }


def module_payload(
    account_id: str, users: Sequence[UserMapping], settings: RetailCrmSettings, client_id: str, base_url: str
) -> dict[str, Any]:
    """The `integrationModule` JSON for one of the account's retailCRMs."""
    codes = [
        {"userId": str(user_id), "code": code}
        for user in users
        if (user_id := retailcrm_user_id(user)) is not None and (code := retailcrm_code(user))
    ]
    phones = [{"siteCode": p.site_code, "externalPhone": p.external_phone} for p in settings.external_phones]
    return {
        "code": settings.module_code,
        "active": True,
        "name": MODULE_NAME,
        "clientId": client_id,
        "baseUrl": base_url.rstrip("/"),
        **module_urls(base_url, account_id),
        "integrations": {
            "telephony": {
                "clientId": client_id,
                **callback_urls(base_url, account_id),
                "allowEdit": False,
                "inputEventSupported": True,
                "outputEventSupported": True,
                "hangupEventSupported": True,
                "additionalCodes": codes,
                "externalPhones": phones,
            }
        },
    }


def register(account_id: str, base_url: str, *, crm_name: str | None = None) -> dict[str, Any]:
    """Register (or update) the module in the account's retailCRM (`crm_name`, default the first);
    returns the payload sent."""
    if not base_url.startswith(("https://", "http://")):
        raise RegistrationError("the public base URL of the API must be an http(s) URL")
    account = get_account(account_id, refresh=True)
    crms = [
        c
        for c in account.settings.crms
        if isinstance(c, RetailCrmSettings) and (crm_name is None or c.name == crm_name)
    ]
    if not crms:
        raise RegistrationError(f"account {account_id} has no retailCRM{f' named {crm_name}' if crm_name else ''}")
    return register_module(account, crms[0], base_url)


def register_module(account: Account, settings: CrmSettings, base_url: str) -> dict[str, Any]:
    """Register (or update) the module in this retailCRM of the account; returns the payload sent.
    The secrets are read afresh: an operator runs it right after putting them."""
    from callbridge.crm.retailcrm.api import RetailCrmApi

    assert isinstance(settings, RetailCrmSettings)
    filled = with_secrets(account.id, settings, force=True)
    client_id, api_key = secret(filled, "client_id"), secret(filled, "api_key")
    if STORED_SECRET in (client_id, api_key):
        raise RegistrationError(f"account {account.id}: retailCRM {settings.name} has no client_id or api_key in SSM")
    payload = module_payload(account.id, account.settings.users, settings, client_id, base_url)
    api = RetailCrmApi(settings.base_url, api_key, trusted_hosts=settings.trusted_hosts)
    try:
        api.edit_module(payload)
    finally:
        api.close()
    return payload
