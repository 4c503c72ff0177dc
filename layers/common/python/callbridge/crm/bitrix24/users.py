"""Who a Bitrix24 user is on the PBX: the account's user mapping read by Bitrix24's keys, the user's
ID (`USER_ID`) and inner phone number (`USER_PHONE_INNER`, by default the PBX extension)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from callbridge.core.config import UserMapping
from callbridge.crm.bitrix24.settings import Bitrix24User


def user_id(user: UserMapping) -> int | None:
    return Bitrix24User.of(user).bitrix24_user_id


def inner_phone(user: UserMapping) -> str | None:
    return Bitrix24User.of(user).bitrix24_inner_phone or user.extension or None


def identity(user: UserMapping) -> dict[str, Any] | None:
    """How Bitrix24's telephony methods name the user: USER_ID, else USER_PHONE_INNER."""
    found = user_id(user)
    if found is not None:
        return {"USER_ID": found}
    phone = inner_phone(user)
    return {"USER_PHONE_INNER": phone} if phone else None


def find_user(users: Sequence[UserMapping], bitrix_user_id: str | int | None) -> UserMapping | None:
    if bitrix_user_id in (None, ""):
        return None
    wanted = str(bitrix_user_id).strip()
    return next((u for u in users if (found := user_id(u)) is not None and str(found) == wanted), None)


def portal_users(account_id: str, crm_name: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The portal's users (`user.get`, every page) each with the PBX user mapped to it, and the
    PBX users whose mapping names nobody in the portal. LookupError: the account has no such CRM."""
    from callbridge.core.accounts import get_account
    from callbridge.crm.base import with_secrets
    from callbridge.crm.bitrix24.api import open_api
    from callbridge.crm.bitrix24.settings import Bitrix24Settings

    account = get_account(account_id)
    crms = [c for c in account.settings.crms if isinstance(c, Bitrix24Settings)] if account.has_crms else []
    crm = next((c for c in crms if crm_name in (None, c.name)), None)
    if crm is None:
        raise LookupError(f"account {account_id} has no Bitrix24 {crm_name or ''}".strip())
    filled = with_secrets(account.id, crm, force=True)
    assert isinstance(filled, Bitrix24Settings)
    api = open_api(account.id, filled)
    try:
        found: list[dict[str, Any]] = []
        start = 0
        while True:  # user.get answers 50 users a page; `start` is the next page's offset
            page = api.call("user.get", {"ACTIVE": True, "start": start})
            found.extend(u for u in (page if isinstance(page, list) else []) if isinstance(u, dict))
            if not isinstance(page, list) or len(page) < 50:
                break
            start += 50
    finally:
        api.close()
    mappings = account.settings.users
    rows: list[dict[str, Any]] = []
    matched: set[str] = set()
    for entry in found:
        inner = str(entry.get("UF_PHONE_INNER") or "").strip() or None
        user = find_user(mappings, entry.get("ID")) or next(
            (u for u in mappings if user_id(u) is None and inner and inner_phone(u) == inner), None
        )
        if user is not None:
            matched.add(user.pbx_user)
        name = " ".join(str(entry.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
        rows.append({"id": str(entry.get("ID")), "name": name, "inner_phone": inner,
                     "pbx_user": user.pbx_user if user else None})  # fmt: skip
    stale = [u.pbx_user for u in mappings if identity(u) is not None and u.pbx_user not in matched]
    return rows, stale
