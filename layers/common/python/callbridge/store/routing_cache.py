"""The routing cache: a caller's responsible manager as a CRM named it, kept in RoutingCacheTable
(key: account + E.164 phone; TTL) so that every concurrent Lambda of the account benefits from one
lookup, plus a small in-process copy that spares warm Lambdas the read. Entries carry their own expiry,
checked on read (DynamoDB's TTL deletion is lazy)."""

from __future__ import annotations

import time
from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item

_MEMORY_LIMIT = 10_000
_memory: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}


def _key(account_id: str, e164: str) -> dict[str, Any]:
    return {"account": {"S": account_id}, "phone": {"S": e164}}


def cached(account_id: str, e164: str) -> dict[str, Any] | None:
    """The unexpired entry, or None. A failed read raises: the caller decides what it means."""
    key = (account_id, e164)
    now = time.time()
    hit = _memory.get(key)
    if hit and hit[0] > now:
        return hit[1]
    response = aws.dynamodb(True).get_item(TableName=get_settings().routing_cache_table, Key=_key(account_id, e164))
    item = response.get("Item")
    if not item:
        return None
    entry = from_item(item)
    expires = float(entry.get("expires_at") or 0)
    if expires <= now:
        return None
    _remember(key, expires, entry)
    return entry


def _remember(key: tuple[str, str], expires: float, entry: dict[str, Any]) -> None:
    if len(_memory) >= _MEMORY_LIMIT:
        _memory.clear()  # crude, but bounded; the DynamoDB copy still serves
    _memory[key] = (expires, entry)


def store_cached(account_id: str, e164: str, entry: dict[str, Any], ttl_s: int) -> dict[str, Any]:
    """Stamped with the time it is written, so that a late answer can never outlive its TTL."""
    from callbridge.store.dynamo import to_item

    now = time.time()
    record = {**entry, "fetched_at": int(now), "expires_at": int(now + ttl_s)}
    _remember((account_id, e164), now + ttl_s, record)
    aws.dynamodb().put_item(
        TableName=get_settings().routing_cache_table,
        Item=to_item({"account": account_id, "phone": e164, **record}),
    )
    return record


def clear_memory_cache() -> None:
    _memory.clear()
