"""Every item of one account, in every table, and the two ways to erase part of one: the DynamoDB
side of a data-subject request (features/erasure.py decides what holds the number and what becomes
of each item).

The Calls table has no index by phone, and a number may sit in any attribute of any item kind
(store/keys.py), so it is scanned whole: an operator's tool, never a request path. The other tables
are keyed by account and read by a query.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import delete_if, from_item, query_items, scan_items, to_value, update_if
from callbridge.store.keys import account_pk, call_pk
from callbridge.store.updates import Update

CALLS, ACCOUNTS, CONTACTS, ROUTING = "calls", "accounts", "contacts", "routing cache"


@dataclass(frozen=True, slots=True)
class Table:
    label: str  # CALLS, ACCOUNTS, CONTACTS or ROUTING
    name: str  # the table's physical name
    key: tuple[str, str]  # its hash and range attributes


def tables() -> list[Table]:
    """The tables of the target the settings point at; the routing cache only when it is known (a
    stack deployed before it had an output for it)."""
    settings = get_settings()
    found = [
        Table(CALLS, settings.calls_table, ("pk", "sk")),
        Table(ACCOUNTS, settings.accounts_table, ("pk", "sk")),
        Table(CONTACTS, settings.contacts_table, ("account", "phone")),
    ]
    if settings.routing_cache_table:
        found.append(Table(ROUTING, settings.routing_cache_table, ("account", "phone")))
    return found


def owner(pk: str) -> str:
    """The account of a Calls item: every partition there is `{KIND}#{account}[#…]`."""
    parts = pk.split("#")
    return parts[1] if len(parts) > 1 else ""


def account_items(table: Table, account: str) -> Iterator[dict[str, Any]]:
    """Every item of `account` in `table`, as plain values."""
    request: dict[str, Any] = {"TableName": table.name}
    if table.label == CALLS:
        # Filtered by DynamoDB to spare the transfer (the scan reads, and bills, the whole table).
        request.update(FilterExpression="contains(pk, :a)", ExpressionAttributeValues={":a": {"S": f"#{account}"}})
        return (item for item in map(from_item, scan_items(request)) if owner(str(item["pk"])) == account)
    if table.label == ACCOUNTS:
        request.update(KeyConditionExpression="pk = :a", ExpressionAttributeValues={":a": {"S": account_pk(account)}})
    else:
        request.update(KeyConditionExpression="account = :a", ExpressionAttributeValues={":a": {"S": account}})
    return map(from_item, query_items(request))


def call_partition(table: Table, account: str, call_id: str) -> list[dict[str, Any]]:
    """The call item and every item beside it (timeline, deliveries, the CRMs' ids of the call)."""
    request = {
        "TableName": table.name,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": call_pk(account, call_id)}},
        "ConsistentRead": True,
    }
    return [from_item(i) for i in query_items(request)]


def _key(table: Table, item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: to_value(item[name]) for name in table.key}


def delete(table: Table, item: Mapping[str, Any]) -> None:
    delete_if(TableName=table.name, Key=_key(table, item))


def rewrite(table: Table, item: Mapping[str, Any], *, remove: Iterable[str] = (), put: Mapping[str, Any]) -> bool:
    """Remove attributes of an item and set others; False when the item is gone meanwhile (nothing
    is written then: an update would create it again)."""
    update = Update().set(**put).remove(*remove)
    update.bind({"#key": table.key[0]})
    return update_if(
        TableName=table.name, Key=_key(table, item), ConditionExpression="attribute_exists(#key)", **update.request()
    )
