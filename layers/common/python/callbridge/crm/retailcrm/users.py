"""Who a retailCRM manager is on the PBX: the account's user mapping (`users`) read by retailCRM's
keys, the manager's `code` (extension code) and `userId`."""

from __future__ import annotations

from collections.abc import Sequence

from callbridge.core.config import UserMapping
from callbridge.crm.retailcrm.settings import RetailCrmUser


def retailcrm_code(user: UserMapping) -> str | None:
    """The user's extension code in retailCRM: `retailcrm_code`, by default the extension."""
    return RetailCrmUser.of(user).retailcrm_code or user.extension or None


def retailcrm_user_id(user: UserMapping) -> int | None:
    """The user's `userId` in retailCRM, if the mapping names it."""
    return RetailCrmUser.of(user).retailcrm_user_id


def find_user(users: Sequence[UserMapping], code: str | None, user_id: str | int | None) -> UserMapping | None:
    """The mapped user of a retailCRM manager: by code first, else by userId."""
    if code:
        found = next((u for u in users if retailcrm_code(u) == code), None)
        if found or user_id in (None, ""):
            return found
    if user_id not in (None, ""):
        wanted = str(user_id)
        return next(
            (u for u in users if (found_id := retailcrm_user_id(u)) is not None and str(found_id) == wanted), None
        )
    return None
