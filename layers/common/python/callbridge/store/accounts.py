"""The Accounts table: the account (CONFIG) and user (USER#) items, and the one way to list accounts
(store/keys.py has the layout)."""

from __future__ import annotations

from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, to_item
from callbridge.store.keys import CONFIG, USER_PREFIX, account_key, account_pk, user_sk


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


def put_users(account_id: str, users: list[dict[str, Any]]) -> None:
    """Write one USER# item per mapped user (`users`: plain values, each with its `pbx_user`)."""
    client = aws.dynamodb()
    for user in users:
        item = {"pk": account_pk(account_id), "sk": user_sk(str(user["pbx_user"])), **user}
        client.put_item(TableName=get_settings().accounts_table, Item=to_item(item))


def get_users(account_id: str) -> list[dict[str, Any]]:
    """The account's USER# items as plain values (keys included), in sort-key order."""
    kwargs: dict[str, Any] = {
        "TableName": get_settings().accounts_table,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :user)",
        "ExpressionAttributeValues": {":pk": {"S": account_pk(account_id)}, ":user": {"S": USER_PREFIX}},
    }
    found: list[dict[str, Any]] = []
    while True:
        response = aws.dynamodb().query(**kwargs)
        found.extend(from_item(i) for i in response.get("Items", []))
        if "LastEvaluatedKey" not in response:
            return found
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


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
    found: list[str] = []
    while True:
        response = aws.dynamodb().scan(**kwargs)
        found.extend(str(i["account"]["S"]) for i in response.get("Items", []) if "account" in i)
        if "LastEvaluatedKey" not in response:
            return sorted(found)
        kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
