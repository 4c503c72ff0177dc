"""retailCRM's requests to us (docs/retailcrm.md): `makeCallUrl` (`clientId`, `code` and/or
`userId`, `phone`, optional `externalPhone`) and `changeUserStatusUrl` (`clientId`, `code`, `userId`,
`status`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from callbridge.core.config import UserMapping
from callbridge.crm.base import Callback, query_phone
from callbridge.crm.retailcrm.users import find_user


def read_callback(query: Mapping[str, str]) -> Callback:
    code, user_id = query.get("code"), query.get("userId")
    return Callback(
        secret=query.get("clientId") or "",
        phone=query_phone(query.get("phone")),
        # The shop's external number (sent for entities of a shop that has one) is the caller id to show.
        clid=query_phone(query.get("externalPhone")) or None,
        status=query.get("status") or "",
        manager={"retailcrm_user_id": user_id, "retailcrm_code": code},
    )


def callback_user(users: Sequence[UserMapping], callback: Callback) -> UserMapping | None:
    code = (callback.manager.get("retailcrm_code") or "").strip() or None
    user_id = (callback.manager.get("retailcrm_user_id") or "").strip() or None
    return find_user(users, code, user_id)
