"""Who an amoCRM user is on the PBX: the account's user mapping read by `kommo_user_id`, and the
account's amoCRM users (`GET /api/v4/users`) beside it, for `callbridge kommo users`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from callbridge.core.config import UserMapping
from callbridge.crm.kommo.settings import KommoSettings, KommoUser


def user_id(user: UserMapping) -> int | None:
    return KommoUser.of(user).kommo_user_id


def find_user(users: Sequence[UserMapping], kommo_user_id: str | int | None) -> UserMapping | None:
    if kommo_user_id in (None, "", 0):
        return None
    wanted = str(kommo_user_id).strip()
    return next((u for u in users if (found := user_id(u)) is not None and str(found) == wanted), None)


def account_crm(account_id: str, crm_name: str | None = None) -> tuple[Any, KommoSettings]:
    """The account and its amoCRM (by `name`; default: the first) with its secrets from SSM.
    LookupError: the account has no such CRM."""
    from callbridge.core.accounts import get_account
    from callbridge.crm.base import with_secrets

    account = get_account(account_id)
    crms = [c for c in account.settings.crms if isinstance(c, KommoSettings)] if account.has_crms else []
    crm = next((c for c in crms if crm_name in (None, c.name)), None)
    if crm is None:
        raise LookupError(f"account {account_id} has no amoCRM {crm_name or ''}".strip())
    filled = with_secrets(account.id, crm, force=True)
    assert isinstance(filled, KommoSettings)
    return account, filled


def account_users(account_id: str, crm_name: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The amoCRM users of the account, each with the PBX user mapped to it, and the PBX users whose
    `kommo_user_id` names nobody there. LookupError: the account has no such CRM."""
    from callbridge.crm.kommo.api import obj, open_api

    account, crm = account_crm(account_id, crm_name)
    api = open_api(account.id, crm)
    try:
        found = api.pages("/api/v4/users", "users")
    finally:
        api.close()
    mappings = account.settings.users
    rows: list[dict[str, Any]] = []
    present: set[str] = set()
    for entry in found:
        present.add(str(entry.get("id")))
        user = find_user(mappings, entry.get("id"))
        rights = obj(entry.get("rights"))
        rows.append({
            "id": str(entry.get("id")),
            "name": str(entry.get("name") or "").strip(),
            "email": entry.get("email"),
            "active": bool(rights.get("is_active", True)),
            "pbx_user": user.pbx_user if user else None,
        })  # fmt: skip
    stale = [u.pbx_user for u in mappings if (found_id := user_id(u)) is not None and str(found_id) not in present]
    return rows, stale
