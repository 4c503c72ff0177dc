"""retailCRM telephony module registration (specs/retailcrm.md, seed 001 "Registering and setting
the telephony"): `POST /api/v5/integration-modules/{code}/edit` creates the module or, when one with
that code exists, changes it - so running it again updates and never duplicates.

`clientId` goes at the top level (API v5) and, as in the seed's example, inside
`integrations.telephony` too; the telephony fields keep the seed's layout.
"""

from __future__ import annotations

from typing import Any

from callbridge.core.accounts import Account, get_account
from callbridge.core.users import mapped_users, retailcrm_code
from callbridge.infra import secrets

MODULE_NAME = "CallBridge"


class RegistrationError(RuntimeError):
    """The account has no retailCRM to register with, or lacks what the module needs."""


def callback_urls(base_url: str, account_id: str) -> dict[str, str]:
    base = base_url.rstrip("/")
    return {
        "makeCallUrl": f"{base}/v1/{account_id}/retailcrm/make-call",
        "changeUserStatusUrl": f"{base}/v1/{account_id}/retailcrm/user-status",
    }


def module_payload(account: Account, crm: dict[str, Any], client_id: str, base_url: str) -> dict[str, Any]:
    """The `integrationModule` JSON for one of the account's retailCRMs."""
    codes = [
        {"userId": str(user["retailcrm_user_id"]), "code": retailcrm_code(user)}
        for user in mapped_users(account)
        if user.get("retailcrm_user_id") is not None and retailcrm_code(user)
    ]
    phones = [
        {"siteCode": str(p["site_code"]), "externalPhone": str(p["external_phone"])}
        for p in crm.get("external_phones") or []
        if isinstance(p, dict)
    ]
    return {
        "code": str(crm.get("module_code") or "callbridge"),
        "active": True,
        "name": MODULE_NAME,
        "clientId": client_id,
        "baseUrl": base_url.rstrip("/"),
        "accountUrl": base_url.rstrip("/"),
        "integrations": {
            "telephony": {
                "clientId": client_id,
                **callback_urls(base_url, account.id),
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
    """Register (or update) the module in the account's retailCRM; returns the payload sent."""
    from callbridge.crm.retailcrm.api import RetailCrmApi

    if not base_url.startswith(("https://", "http://")):
        raise RegistrationError("the public base URL of the API must be an http(s) URL")
    account = get_account(account_id, refresh=True)
    crms = [
        c
        for c in account.config.get("crms") or []
        if isinstance(c, dict) and c.get("kind") == "retailcrm" and (crm_name is None or c.get("name") == crm_name)
    ]
    if not crms:
        raise RegistrationError(f"account {account_id} has no retailCRM{f' named {crm_name}' if crm_name else ''}")
    crm = crms[0]
    values = secrets.account_secrets(account_id, force=True)
    name = str(crm["name"])
    client_id = values.get(secrets.crm_secret_name(name, "client_id"))
    api_key = values.get(secrets.crm_secret_name(name, "api_key"))
    if not client_id or not api_key:
        raise RegistrationError(f"account {account_id}: retailCRM {name} has no client_id or api_key in SSM")
    payload = module_payload(account, crm, client_id, base_url)
    api = RetailCrmApi(str(crm["base_url"]), api_key)
    try:
        api.edit_module(payload)
    finally:
        api.close()
    return payload
