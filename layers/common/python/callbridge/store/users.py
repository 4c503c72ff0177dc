"""PBX users in the Accounts table (store/keys.py has the layout):

- `USER#{pbx_user}`: a mapped user, written from the account file; the sync adds `seen_in_pbx`,
  `real_name`, `pbx_ext`, `email`, `synced_at` and never touches the mapping itself.
- `PBXUSER#{name}`: a user the PBX listed in the last sync that no mapping names.
"""

from __future__ import annotations

from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, query_items, to_item, to_value
from callbridge.store.keys import PBX_USER_PREFIX, USER_PREFIX, account_key, pbx_user_sk, user_sk
from callbridge.store.updates import Update


def put_mapped(account: str, pbx_user: str, attributes: dict[str, Any]) -> None:
    """A mapped user as the account file says (replacing what was stored)."""
    aws.dynamodb().put_item(
        TableName=get_settings().accounts_table,
        Item={**to_item(attributes), **account_key(account, user_sk(pbx_user))},
    )


def mark_seen(account: str, pbx_user: str, facts: dict[str, Any], now: str) -> None:
    """The PBX listed this mapped user: keep what it says (a fact it no longer gives is removed)."""
    update = Update().set(seen_in_pbx=True, synced_at=now)
    update.set(**{k: v for k, v in facts.items() if v is not None})
    missing = [k for k, v in facts.items() if v is None]
    if missing:
        update.remove(*missing)
    aws.dynamodb().update_item(
        TableName=get_settings().accounts_table, Key=account_key(account, user_sk(pbx_user)), **update.request()
    )


def mark_missing(account: str, pbx_user: str, now: str) -> None:
    """A mapped user the PBX no longer lists."""
    aws.dynamodb().update_item(
        TableName=get_settings().accounts_table,
        Key=account_key(account, user_sk(pbx_user)),
        UpdateExpression="SET seen_in_pbx = :no, synced_at = :at",
        ExpressionAttributeValues={":no": to_value(False), ":at": to_value(now)},
    )


def put_unmapped(account: str, name: str, attributes: dict[str, Any]) -> None:
    aws.dynamodb().put_item(
        TableName=get_settings().accounts_table,
        Item={**account_key(account, pbx_user_sk(name)), **to_item(attributes)},
    )


def delete_unmapped(account: str, name: str) -> None:
    aws.dynamodb().delete_item(TableName=get_settings().accounts_table, Key=account_key(account, pbx_user_sk(name)))


def unmapped(account: str) -> list[dict[str, Any]]:
    """PBX users of the last sync that no mapping names (their attributes, without the key)."""
    return _without_keys(_query_prefix(account, PBX_USER_PREFIX))


def mapped(account: str) -> list[dict[str, Any]]:
    """Mapped users as stored, with what the last sync learnt about them."""
    return _without_keys(_query_prefix(account, USER_PREFIX))


def _without_keys(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k not in ("pk", "sk")} for item in items]


def _query_prefix(account: str, prefix: str) -> list[dict[str, Any]]:
    kwargs: dict[str, Any] = {
        "TableName": get_settings().accounts_table,
        "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
        "ExpressionAttributeValues": {":pk": account_key(account)["pk"], ":prefix": {"S": prefix}},
    }
    return [from_item(i) for i in query_items(kwargs)]
