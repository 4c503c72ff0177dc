"""Positions of pollers and backfills (Accounts table, `CURSOR#{name}`) and the non-call records a
source keeps beside its calls (Calls table, `MSG#`), store/keys.py has the layout."""

from __future__ import annotations

from typing import Any

from callbridge.infra import aws, clock
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, put_if, to_item
from callbridge.store.keys import MESSAGE_SK, account_key, cursor_sk, message_pk
from callbridge.store.retention import expires_at


def load_cursor(account: str, name: str) -> dict[str, Any]:
    """The saved position `name` of an account ({} when there is none)."""
    response = aws.dynamodb().get_item(
        TableName=get_settings().accounts_table, Key=account_key(account, cursor_sk(name)), ConsistentRead=True
    )
    item = response.get("Item")
    return {k: v for k, v in from_item(item).items() if k not in ("pk", "sk")} if item else {}


def save_cursor(account: str, name: str, data: dict[str, Any]) -> None:
    item = to_item({**data, "updated_at": clock.iso(clock.now())})
    aws.dynamodb().put_item(
        TableName=get_settings().accounts_table, Item={**item, **account_key(account, cursor_sk(name))}
    )


def put_message_once(account: str, uuid: str, attributes: dict[str, Any]) -> bool:
    """Keep a source's non-call record (an SMS, a fax) once by its uuid; False when it was kept before."""
    item = to_item({"pk": message_pk(account, uuid), "sk": MESSAGE_SK, "expires_at": expires_at(), **attributes})
    return put_if(TableName=get_settings().calls_table, Item=item, ConditionExpression="attribute_not_exists(pk)")
