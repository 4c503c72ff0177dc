"""Clicks waiting for their PBX call (Calls table, `CLICK#{account}#{pbx user}#{e164}` / `PENDING`):
a click-to-call the PBX accepted without naming its call gets a call id of ours for its card
(callbridge.core.clicks); the PBX's own call for that manager and number, when it comes, takes the
click once. The latest click of a manager on a number is the one waiting; entries expire by
themselves (`expires_at`)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, to_item, update_if
from callbridge.store.keys import call_key, click_pk

SK = "PENDING"


def _key(account: str, pbx_user: str, e164: str) -> dict[str, Any]:
    return {"pk": {"S": click_pk(account, pbx_user, e164)}, "sk": {"S": SK}}


def expect(
    account: str, pbx_user: str, e164: str, placeholder: str, clicked_at: int, expires_at: int, *, named: bool = False
) -> None:
    item = {"placeholder": placeholder, "clicked_at": clicked_at, "expires_at": expires_at, "named": named}
    aws.dynamodb().put_item(
        TableName=get_settings().calls_table, Item={**to_item(item), **_key(account, pbx_user, e164)}
    )


def waiting(account: str, pbx_user: str, e164: str) -> dict[str, Any] | None:
    found = (
        aws.dynamodb()
        .get_item(TableName=get_settings().calls_table, Key=_key(account, pbx_user, e164), ConsistentRead=True)
        .get("Item")
    )
    return from_item(found) if found else None


def take(
    account: str, pbx_user: str, e164: str, placeholder: str, call_id: str, *, card_attribute: str | None = None
) -> bool:
    """The click (still the one with `placeholder`) is `call_id`'s: once, the first call to take it
    keeps it (the same call taking it again is still its). `card_attribute`: the call's item keeps
    the placeholder under that name, in the same transaction, so a taken click always has its call
    (the item exists: it was just stored)."""
    take_click: dict[str, Any] = {
        "TableName": get_settings().calls_table,
        "Key": _key(account, pbx_user, e164),
        "UpdateExpression": "SET taken_by = :me",
        "ConditionExpression": "placeholder = :p AND (attribute_not_exists(taken_by) OR taken_by = :me)",
        "ExpressionAttributeValues": {":me": {"S": call_id}, ":p": {"S": placeholder}},
    }
    if card_attribute is None:
        return update_if(**take_click)
    tag_call: dict[str, Any] = {
        "TableName": get_settings().calls_table,
        "Key": call_key(account, call_id),
        "UpdateExpression": "SET #card = :p",
        "ConditionExpression": "attribute_exists(pk)",
        "ExpressionAttributeNames": {"#card": card_attribute},
        "ExpressionAttributeValues": {":p": {"S": placeholder}},
    }
    try:
        aws.dynamodb().transact_write_items(
            TransactItems=[{"Update": take_click}, {"Update": tag_call}]  # type: ignore[typeddict-item]
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "TransactionCanceledException":
            return False  # taken by another call (or the call is gone): nothing changed
        raise
    return True
