"""Managers' statuses as a CRM reported them: RoutingCacheTable items (account, `STATUS#{pbx_user}`,
store/keys.py) without an expiry. Routing state, kept beside the routing cache and not in the
Accounts table: the public user-status endpoint may then write only here, never where the account's
token digests live."""

from __future__ import annotations

from typing import Any

from callbridge.infra import aws, clock
from callbridge.infra.settings import get_settings
from callbridge.store import keys

STATUSES = ("free", "busy", "dinner", "break")


def status_key(account_id: str, pbx_user: str) -> dict[str, Any]:
    return {"account": {"S": account_id}, "phone": {"S": keys.STATUS_PREFIX + pbx_user}}


def get_status(account_id: str, pbx_user: str) -> str | None:
    """The last reported status, None when none was (a failed read raises)."""
    response = aws.dynamodb(True).get_item(
        TableName=get_settings().routing_cache_table,
        Key=status_key(account_id, pbx_user),
        ProjectionExpression="#s",
        ExpressionAttributeNames={"#s": "status"},
    )
    item = response.get("Item")
    return str(item.get("status", {}).get("S", "free")) if item else None


def put_status(account_id: str, pbx_user: str, status: str, reported_by: dict[str, str | None]) -> None:
    """`reported_by`: how the CRM named the manager (e.g. its user id and code), kept for the operator."""
    from callbridge.store.dynamo import to_item

    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    item = to_item({"status": status, "pbx_user": pbx_user, **reported_by, "updated_at": clock.iso(clock.now())})
    aws.dynamodb().put_item(
        TableName=get_settings().routing_cache_table, Item={**item, **status_key(account_id, pbx_user)}
    )
