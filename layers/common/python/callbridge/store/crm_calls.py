"""A CRM's own record of one of our calls, for CRMs that file a call in steps under an id they hand
out (Bitrix24: `register` answers a CALL_ID, `finish` and the call cards name it). One item per call
and CRM beside the call (`CALL#{account}#{call id}` / `CRMCALL#{crm}`), written before the CRM is
asked to act on the id, so that a retry - of a live card, of a delivery, in another Lambda - reuses
what the first attempt started instead of starting it again.

The item holds only what the connector chose to keep (request parameters, the CRM's id, progress
marks); never a secret. It expires (`expires_at`, the Calls table's TTL) long after any retry.
"""

from __future__ import annotations

from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import delete_if, from_item, put_if, to_item, update_if
from callbridge.store.keys import call_key, crm_call_sk
from callbridge.store.updates import Update

KEEP_SECONDS = 35 * 24 * 3600  # longer than a parked delivery waits for an operator's retry


def _key(account: str, call_id: str, crm: str) -> dict[str, Any]:
    return call_key(account, call_id, crm_call_sk(crm))


def get(account: str, call_id: str, crm: str) -> dict[str, Any] | None:
    response = aws.dynamodb().get_item(
        TableName=get_settings().calls_table, Key=_key(account, call_id, crm), ConsistentRead=True
    )
    item = response.get("Item")
    if not item:
        return None
    found = from_item(item)
    for name in ("pk", "sk"):
        found.pop(name, None)
    return found


def claim(account: str, call_id: str, crm: str, attributes: dict[str, Any], now_epoch: int) -> dict[str, Any]:
    """Create the item with `attributes` unless it exists; returns the stored item either way (the
    first writer's attributes win: two concurrent attempts end up acting alike)."""
    item = {**to_item({**attributes, "expires_at": now_epoch + KEEP_SECONDS}), **_key(account, call_id, crm)}
    put_if(TableName=get_settings().calls_table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    found = get(account, call_id, crm)
    if found is None:  # deleted between the two requests (TTL): as good as absent, write ours
        return claim(account, call_id, crm, attributes, now_epoch)
    return found


def release(account: str, call_id: str, crm: str, owner: str) -> None:
    """Delete the item `claim` created with {"owner": owner}, unless another writer's item is there."""
    delete_if(
        TableName=get_settings().calls_table,
        Key=_key(account, call_id, crm),
        ConditionExpression="#o = :o",
        ExpressionAttributeNames={"#o": "owner"},
        ExpressionAttributeValues={":o": {"S": owner}},
    )


def put(account: str, call_id: str, crm: str, attributes: dict[str, Any], now_epoch: int) -> None:
    """Write the item whatever was there (a newer fact replaces an older one)."""
    item = {**to_item({**attributes, "expires_at": now_epoch + KEEP_SECONDS}), **_key(account, call_id, crm)}
    aws.dynamodb().put_item(TableName=get_settings().calls_table, Item=item)


def update(account: str, call_id: str, crm: str, update: Update, condition: str | None = None) -> bool:
    """Apply `update` to an existing item (a set_if_absent keeps the first value written); False
    when the item is absent or `condition` (its names and values bound on `update`) does not hold."""
    request = update.request()
    expression = "attribute_exists(pk)" + (f" AND ({condition})" if condition else "")
    return update_if(
        TableName=get_settings().calls_table,
        Key=_key(account, call_id, crm),
        ConditionExpression=expression,
        **request,
    )
