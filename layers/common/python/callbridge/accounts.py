"""The runtime view of an account: the few fields every webhook needs, read with one GetItem and
cached per warm Lambda. The full, validated configuration lives in `callbridge.config`."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from callbridge import aws
from callbridge.dynamo import from_item
from callbridge.settings import get_settings

ACCOUNT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CACHE_SECONDS = 60.0


class UnknownAccount(LookupError):
    """No such account (or a malformed id). Callers answer it exactly like a wrong token, so that
    nobody can probe which accounts exist."""


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    phone_region: str
    timezone: str
    pbx_kind: str
    config: dict[str, Any]


def account_key(account_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"ACCOUNT#{account_id}"}, "sk": {"S": "CONFIG"}}


_cache: dict[str, tuple[float, Account]] = {}


def get_account(account_id: str, *, fast: bool = False) -> Account:
    if not ACCOUNT_ID.match(account_id):
        raise UnknownAccount(account_id)
    hit = _cache.get(account_id)
    now = time.monotonic()
    if hit and hit[0] > now:
        return hit[1]
    response = aws.dynamodb(fast).get_item(TableName=get_settings().accounts_table, Key=account_key(account_id))
    if "Item" not in response:
        raise UnknownAccount(account_id)
    data = from_item(response["Item"])
    account = Account(
        id=account_id,
        phone_region=str(data.get("phone_region") or ""),
        timezone=str(data.get("timezone") or "UTC"),
        pbx_kind=str(data.get("pbx_kind") or ""),
        config=data.get("config") or {},
    )
    _cache[account_id] = (now + _CACHE_SECONDS, account)
    return account


def clear_account_cache() -> None:
    _cache.clear()
