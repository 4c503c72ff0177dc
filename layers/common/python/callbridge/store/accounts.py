"""The Accounts table: the account (CONFIG) and user (USER#) items, and the one way to list accounts
(store/keys.py has the layout)."""

from __future__ import annotations

from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, scan_items, to_item
from callbridge.store.keys import CONFIG, account_key, contact_key

# A caller's Contacts item read along with the account: (its E.164 key, the item or None).
ContactRead = tuple[str, dict[str, Any] | None]


def get_account_item(account_id: str, *, fast: bool = False) -> dict[str, Any] | None:
    """The account's CONFIG item as plain values, or None. `fast`: the contact path's client."""
    response = aws.dynamodb(fast).get_item(TableName=get_settings().accounts_table, Key=account_key(account_id))
    item = response.get("Item")
    return from_item(item) if item is not None else None


def get_account_and_contact(
    account_id: str, e164: str, *, fast: bool = False
) -> tuple[dict[str, Any] | None, ContactRead | None]:
    """The account's CONFIG item (as get_account_item) and its Contacts item for `e164` (as
    store/contacts.py find_by_phone), in one BatchGetItem: a ringing phone's cold start then waits
    for one round trip, not two. The contact comes as (e164, item or None), or None when DynamoDB
    left it unread (its UnprocessedKeys): whoever needs it then reads it alone. An account left
    unread is read here, since nothing can go on without it."""
    settings = get_settings()
    accounts, contacts = settings.accounts_table, settings.contacts_table
    response = aws.dynamodb(fast).batch_get_item(
        RequestItems={
            accounts: {"Keys": [account_key(account_id)]},
            contacts: {"Keys": [contact_key(account_id, e164)]},
        }
    )
    found = response.get("Responses") or {}
    unread = response.get("UnprocessedKeys") or {}
    if accounts in unread:
        account = get_account_item(account_id, fast=fast)
    else:
        items = found.get(accounts) or ()
        account = from_item(items[0]) if items else None
    if contacts in unread:
        return account, None
    items = found.get(contacts) or ()
    return account, (e164, from_item(items[0]) if items else None)


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
