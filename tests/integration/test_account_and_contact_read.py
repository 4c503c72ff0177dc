"""The contact path's cold read (store/accounts.py get_account_and_contact): the account and the
caller's directory entry in one BatchGetItem, and what happens when DynamoDB leaves a key of it
unread (UnprocessedKeys, under throttling): the account is read alone, the entry is left to the
lookup's own GetItem."""

from __future__ import annotations

from typing import Any

import pytest

from callbridge.core import accounts
from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.accounts import get_account_and_contact, get_account_item
from callbridge.store.contacts import find_by_phone

pytestmark = pytest.mark.usefixtures("cloud")


class Unprocessing:
    """The real client, whose BatchGetItem leaves the keys of `tables` unprocessed."""

    def __init__(self, client: Any, tables: set[str]) -> None:
        self._client, self._tables = client, tables
        self.calls: list[str] = []

    def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("BatchGetItem")
        asked = kwargs["RequestItems"]
        kept = {table: keys for table, keys in asked.items() if table not in self._tables}
        response: dict[str, Any] = self._client.batch_get_item(RequestItems=kept) if kept else {"Responses": {}}
        response["UnprocessedKeys"] = {table: keys for table, keys in asked.items() if table in self._tables}
        return response

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("GetItem")
        response: dict[str, Any] = self._client.get_item(**kwargs)
        return response


def unprocessing(monkeypatch: pytest.MonkeyPatch, *tables: str) -> Unprocessing:
    fake = Unprocessing(aws.dynamodb(True), set(tables))
    monkeypatch.setattr(aws, "dynamodb", lambda fast=False: fake)
    return fake


def test_the_account_and_the_entry_are_read_as_each_alone():
    account, contact = get_account_and_contact("demo", "+79101234567", fast=True)
    assert account == get_account_item("demo")
    assert contact == ("+79101234567", find_by_phone("demo", "+79101234567"))
    assert contact[1] is not None and contact[1]["name"] == "Manager of Horns and Hooves LLC"
    assert get_account_and_contact("demo", "+79990000000") == (account, ("+79990000000", None))
    assert get_account_and_contact("nosuch", "+79101234567") == (None, ("+79101234567", None))


def test_an_entry_left_unread_is_not_taken_for_a_missing_one(monkeypatch: pytest.MonkeyPatch):
    fake = unprocessing(monkeypatch, get_settings().contacts_table)
    account, contact = get_account_and_contact("demo", "+79101234567", fast=True)
    assert account is not None and account["pbx_kind"] == "cloudpbx"
    assert contact is None
    assert fake.calls == ["BatchGetItem"]


def test_an_account_left_unread_is_read_alone(monkeypatch: pytest.MonkeyPatch):
    fake = unprocessing(monkeypatch, get_settings().accounts_table)
    account, contact = get_account_and_contact("demo", "+79101234567", fast=True)
    assert fake.calls == ["BatchGetItem", "GetItem"]
    assert account == get_account_item("demo")
    assert contact is not None and contact[1] is not None


def test_a_caller_whose_entry_was_left_unread_is_still_found(monkeypatch: pytest.MonkeyPatch):
    from callbridge.features.callers import lookup

    fake = unprocessing(monkeypatch, get_settings().contacts_table)
    token = "demo-crm-token-0001"
    account, read = accounts.authenticate_caller("demo", token, "+79101234567")
    assert read is None
    found, served = lookup(account, "79101234567", 0.0, read)
    assert (found, served) == ({"contact_name": "Manager of Horns and Hooves LLC", "responsible": "andy"}, "directory")
    assert fake.calls == ["BatchGetItem", "GetItem"]
