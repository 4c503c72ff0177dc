"""Contacts table: one item per (account, E.164 phone), so that answering a ringing phone is one
GetItem. A contact with several phones has one item per phone, sharing `contact_id`."""

from __future__ import annotations

from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, query_items, to_item
from callbridge.store.keys import contact_key


def find_by_phone(account: str, e164: str, *, fast: bool = False) -> dict[str, Any] | None:
    response = aws.dynamodb(fast).get_item(
        TableName=get_settings().contacts_table,
        Key=contact_key(account, e164),
    )
    item = response.get("Item")
    return from_item(item) if item else None


def put_contact(account: str, contact_id: str, name: str, phones: list[str], responsible: str | None) -> None:
    client = aws.dynamodb()
    for phone in phones:
        client.put_item(
            TableName=get_settings().contacts_table,
            Item=to_item(
                {
                    "account": account,
                    "phone": phone,
                    "contact_id": contact_id,
                    "name": name,
                    "responsible": responsible,
                    "phones": phones,
                }
            ),
        )


BATCH_LIMIT = 25  # BatchWriteItem's limit


def put_contact_items(items: list[dict[str, Any]], *, tries: int = 8) -> int:
    """BatchWriteItem of up to BATCH_LIMIT contact items (plain values), retrying unprocessed ones
    `tries` times. Returns how many are still unprocessed (0: all written)."""
    table = get_settings().contacts_table
    client = aws.dynamodb()
    requests: list[Any] = [{"PutRequest": {"Item": to_item(item)}} for item in items]
    for _ in range(tries):
        response = client.batch_write_item(RequestItems={table: requests})
        requests = list(response.get("UnprocessedItems", {}).get(table, []))
        if not requests:
            return 0
    return len(requests)


def list_contacts(account: str) -> list[dict[str, Any]]:
    """Every contact item of the account (one per phone), as plain values."""
    kwargs: dict[str, Any] = {
        "TableName": get_settings().contacts_table,
        "KeyConditionExpression": "account = :a",
        "ExpressionAttributeValues": {":a": {"S": account}},
    }
    return [from_item(i) for i in query_items(kwargs)]
