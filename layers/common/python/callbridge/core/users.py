"""Who a PBX user is in every other system: the account's `users` mapping (docs/accounts.md). Every
layer above the core reads it here (a CRM connector included), never through a feature."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callbridge.core.accounts import Account


def mapped_users(account: Account) -> list[dict[str, Any]]:
    """The account's user mapping, from the cached account item (no extra read)."""
    mapping = account.config.get("users") or []
    return [u for u in mapping if isinstance(u, dict) and u.get("pbx_user")]


def retailcrm_code(user: Mapping[str, Any]) -> str | None:
    code = user.get("retailcrm_code") or user.get("extension")
    return str(code) if code not in (None, "") else None


def find_user(
    account: Account,
    *,
    pbx_user: str | None = None,
    extension: str | None = None,
    crm_code: str | None = None,
    retailcrm_user_id: str | int | None = None,
) -> dict[str, Any] | None:
    """The mapped user matching the first given key (in the order of the parameters)."""
    mapping = mapped_users(account)
    if pbx_user:
        return next((u for u in mapping if u["pbx_user"] == pbx_user), None)
    if extension:
        return next((u for u in mapping if str(u.get("extension") or "") == extension), None)
    if crm_code:
        found = next((u for u in mapping if retailcrm_code(u) == crm_code), None)
        if found or retailcrm_user_id in (None, ""):
            return found
    if retailcrm_user_id not in (None, ""):
        wanted = str(retailcrm_user_id)
        return next((u for u in mapping if str(u.get("retailcrm_user_id") or "") == wanted), None)
    return None
