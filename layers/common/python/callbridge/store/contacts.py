"""Contacts table: one item per (account, E.164 phone), so that answering a ringing phone is one
GetItem. A contact with several phones has one item per phone, sharing `contact_id`."""

from __future__ import annotations

from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, to_item


def find_by_phone(account: str, e164: str, *, fast: bool = False) -> dict[str, Any] | None:
    response = aws.dynamodb(fast).get_item(
        TableName=get_settings().contacts_table,
        Key={"account": {"S": account}, "phone": {"S": e164}},
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
