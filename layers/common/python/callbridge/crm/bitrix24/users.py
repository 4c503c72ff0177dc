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
