"""The Accounts table: the account (CONFIG) and user (USER#) items, and the one way to list accounts
(store/keys.py has the layout)."""

from __future__ import annotations

from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, scan_items, to_item
from callbridge.store.keys import CONFIG, account_key


def get_account_item(account_id: str, *, fast: bool = False) -> dict[str, Any] | None:
    """The account's CONFIG item as plain values, or None. `fast`: the contact path's client."""
    response = aws.dynamodb(fast).get_item(TableName=get_settings().accounts_table, Key=account_key(account_id))
    item = response.get("Item")
    return from_item(item) if item is not None else None


def put_account(account_id: str, values: dict[str, Any]) -> None:
    """Write the account's CONFIG item (`values`: its plain attributes, the key added here)."""
    aws.dynamodb().put_item(
        TableName=get_settings().accounts_table, Item={**to_item(values), **account_key(account_id)}
    )


def list_accounts(pbx_kind: str | None = None) -> list[str]:
    """Ids of every account (or of those whose PBX is `pbx_kind`), sorted."""
    values: dict[str, Any] = {":config": {"S": CONFIG}}
    condition = "sk = :config"
    if pbx_kind is not None:
        condition += " AND pbx_kind = :kind"
        values[":kind"] = {"S": pbx_kind}
    kwargs: dict[str, Any] = {
        "TableName": get_settings().accounts_table,
        "FilterExpression": condition,
        "ExpressionAttributeValues": values,
        "ProjectionExpression": "account",
    }
    return sorted(str(i["account"]["S"]) for i in scan_items(kwargs) if "account" in i)
