"""Callback to-dos in Bitrix24, through the delivery engine (calls stored on moto, delivered to the
strict fake portal on 127.0.0.1 over HTTP): a missed caller gets one to-do on his contact (or the
lead crm_create made) for its responsible user, due as the account says; an answered call with him
completes it; an answer lost after the portal saved the to-do, or its completion, costs no second
to-do; a number Bitrix24 has nothing for gets none, deliberately and with the reason."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from callbridge.core import accounts, handoff
from callbridge.core.config import AccountConfig
from callbridge.features.admin import apply_account
from callbridge.features.delivery import engine
from callbridge.infra import aws, secrets, settings
from callbridge.infra.http import RetryPolicy
from callbridge.store import deliveries
from callbridge.store.dynamo import to_item
from tests.contract.conftest import T0, account_id, now, stack_env  # noqa: F401  (fixtures, by import)
from tests.contract.test_crm_contract import canonical
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.crm_server import serve
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(60)
CODE = "integration-b24-todo-01"
ANDY, BORIS, SENIOR = 7, 9, 11
CONTACT_PHONE = "+79165550101"  # Bitrix24 has his contact, assigned to boris


@dataclass
class Portal:
    fake: FakeBitrix24
    url: str
    account: str
    now: list[datetime]

    def apply(self, **crm: Any) -> None:
        entry = {"kind": "bitrix24", "webhook_url": f"{self.url}/rest/1/{CODE}/", "mode": "batch",
                 "call_cards": False, "callbacks": {"mode": "all", "due_minutes": 30}, **crm}  # fmt: skip
        apply_account(AccountConfig.model_validate(trusting_fakes({
            "account": self.account, "timezone": "Europe/Moscow", "phone_region": "RU",
            "pbx": {"kind": "cloudpbx", "crm_tokens": ["b24-todo-token-0001"]},
            "crms": [entry],
            "users": [{"pbx_user": "andy", "bitrix24_user_id": ANDY}, {"pbx_user": "boris", "bitrix24_user_id": BORIS},
                      {"pbx_user": "senior", "bitrix24_user_id": SENIOR}],
            "missed_calls": {"owner": "senior"},
        })))  # fmt: skip
        accounts.clear_account_cache()
        secrets.reset_secret_cache()

    def store(self, *calls: dict[str, Any]) -> None:
        table = settings.get_settings().calls_table
        aws.dynamodb().batch_write_item(RequestItems={table: [{"PutRequest": {"Item": to_item(c)}} for c in calls]})
        for call in calls:
            handoff.call_final(accounts.get_account(self.account), call["call_id"])

    def deliver(self) -> engine.Report:
        """Every due delivery, then again once the retries are due (their backoff waited out)."""
        report = engine.drain(accounts=[self.account])
        self.now[0] += timedelta(hours=6)
        engine.drain(accounts=[self.account])
        return report

    def answer(self, call_id: str) -> dict[str, Any]:
        (item,) = deliveries.of_call(self.account, call_id)
        assert item["state"] == deliveries.DELIVERED, item
        return dict(item.get("crm_answer") or {})


@pytest.fixture
def portal(account_id: str, now: list[datetime], monkeypatch: pytest.MonkeyPatch) -> Iterator[Portal]:  # noqa: F811
    monkeypatch.setattr(engine, "HTTP_RETRY", RetryPolicy(attempts=1))  # a fault goes back to the engine at once
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://bridge.example.com")
    monkeypatch.setenv("DELIVERY_RETRY_BASE_SECONDS", "10")
    settings.reset_settings()
    fake = FakeBitrix24(code=CODE, users={ANDY: "101", BORIS: "103", SENIOR: "110"}, leads_found=True)
    fake.entities[CONTACT_PHONE] = {
        "CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": 12, "NAME": "Ivan Klientov", "ASSIGNED_BY_ID": str(BORIS),
        "ASSIGNED_BY": {"ID": str(BORIS), "TIMEMAN_STATUS": "OPENED", "USER_PHONE_INNER": "103"},
    }  # fmt: skip
    with serve(fake) as url:
        running = Portal(fake, url, account_id, now)
        running.apply()
        yield running
    assert fake.errors == [], "the connector broke Bitrix24's protocol"


def missed(portal: Portal, n: int, phone: str, started: datetime = T0) -> dict[str, Any]:
    call = canonical(portal.account, n, "in", "missed", 0, started=started)
    call.update(phone=phone, phone_raw=phone.lstrip("+"), missed_reason="no_answer")
    return call


def answered(portal: Portal, n: int, phone: str, direction: str, started: datetime) -> dict[str, Any]:
    call = canonical(portal.account, n, direction, "answered", 40, started=started)
    call.update(phone=phone, phone_raw=phone.lstrip("+"))
    return call


def test_a_missed_caller_gets_one_todo_on_his_contact_completed_once_he_is_reached(portal: Portal) -> None:
    first, again = missed(portal, 1, CONTACT_PHONE), missed(portal, 2, CONTACT_PHONE, T0 + timedelta(minutes=3))
    portal.store(first)
    portal.deliver()
    portal.store(again)  # he rings again three minutes later: within the window, the same to-do
    portal.deliver()
    assert "joined task" in portal.answer(again["call_id"])["callback"]
    [todo] = portal.fake.todos()
    assert (todo["OWNER_TYPE_ID"], todo["OWNER_ID"]) == (3, 12)  # on the caller's contact
    assert todo["RESPONSIBLE_ID"] == BORIS  # the contact's responsible user, not the missed-call owner
    assert datetime.fromisoformat(todo["DEADLINE"]) == T0 + timedelta(minutes=30)  # callbacks.due_minutes
    assert todo["SUBJECT"] == f"Call back {CONTACT_PHONE}" and "[cb-" in todo["DESCRIPTION"]
    assert todo["COMPLETED"] == "N"
    assert portal.answer(first["call_id"])["callback"] == f"callback: task {todo['ID']} opened"

    # Andy calls him back and he answers: the to-do is done.
    portal.store(answered(portal, 3, CONTACT_PHONE, "out", T0 + timedelta(hours=1)))
    portal.deliver()
    assert [t["COMPLETED"] for t in portal.fake.todos()] == ["Y"]
    assert portal.fake.methods.count("crm.activity.todo.add") == 1


def test_a_todo_saved_before_its_answer_was_lost_is_found_not_added_again(portal: Portal) -> None:
    """The portal saves the to-do and answers 500: the delivery is retried, the retry lists the
    contact's to-dos, finds our marker and adds none. The same for its completion."""
    portal.fake.lose_answers["crm.activity.todo.add"] = 1
    call = missed(portal, 1, CONTACT_PHONE)
    portal.store(call)
    first = portal.deliver()
    assert first.retried == 1  # the callback work failed for now: the delivery comes again
    [todo] = portal.fake.todos()
    assert portal.fake.methods.count("crm.activity.todo.add") == 1
    assert portal.fake.methods.count("crm.activity.list") == 1  # the retry asked before adding
    assert portal.answer(call["call_id"])["callback"] == f"callback: task {todo['ID']} opened"

    portal.fake.lose_answers["crm.activity.update"] = 1
    portal.store(answered(portal, 2, CONTACT_PHONE, "in", T0 + timedelta(minutes=40)))
    portal.deliver()
    assert [t["COMPLETED"] for t in portal.fake.todos()] == ["Y"]
    assert portal.fake.methods.count("crm.activity.todo.add") == 1


def test_an_unknown_caller_gets_a_todo_on_the_lead_crm_create_made(portal: Portal) -> None:
    """Bitrix24 made a lead when the missed call was registered (crm_create), with the call's user -
    the missed-call owner - as its responsible: the to-do goes on that lead, for him."""
    call = missed(portal, 1, "+79165550202")
    portal.store(call)
    portal.deliver()
    assert portal.fake.leads == ["+79165550202"]
    [todo] = portal.fake.todos()
    assert (todo["OWNER_TYPE_ID"], todo["OWNER_ID"]) == (1, 1001)
    assert todo["RESPONSIBLE_ID"] == SENIOR


def test_unknown_numbers_mode_skips_a_known_contact_and_covers_a_lead(portal: Portal) -> None:
    portal.apply(callbacks={"mode": "unknown_numbers"})
    known, unknown = missed(portal, 1, CONTACT_PHONE), missed(portal, 2, "+79165550303")
    portal.store(known, unknown)
    portal.deliver()
    assert [(t["OWNER_TYPE_ID"], t["RESPONSIBLE_ID"]) for t in portal.fake.todos()] == [(1, SENIOR)]
    assert "Bitrix24 knows the number" in portal.answer(known["call_id"])["callback"]


def test_without_crm_create_an_unknown_caller_gets_no_todo_and_the_reason_says_why(portal: Portal) -> None:
    portal.apply(crm_create=False)
    call = missed(portal, 1, "+79165550404")
    portal.store(call)
    report = portal.deliver()
    assert report.delivered == 1 and report.errors == 0  # the call is filed: nothing failed
    assert portal.fake.todos() == [] and portal.fake.methods.count("crm.activity.todo.add") == 0
    answer = portal.answer(call["call_id"])["callback"]
    assert "no contact, company or lead" in answer and "crm_create is off" in answer


def test_the_fake_portal_holds_the_todo_methods_to_their_documented_parameters() -> None:
    """What the checks above rely on: the fake refuses or notes what Bitrix24's documentation of the
    three methods does not allow (so a connector that sent it would fail those tests)."""
    from urllib.parse import urlencode

    from callbridge.crm.bitrix24.api import php_form

    fake = FakeBitrix24(code=CODE, users={ANDY: "101"})
    fake.entities[CONTACT_PHONE] = {"CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": 12}

    def call(method: str, params: dict[str, Any]) -> int:
        body = urlencode(php_form(params)).encode()
        headers = {"content-type": "application/x-www-form-urlencoded"}
        status, _, _ = fake.handle("POST", f"/rest/1/{CODE}/{method}.json", {}, headers, body)
        return status

    todo = {"ownerTypeId": 3, "ownerId": 12, "deadline": "2024-05-01T06:30:00+00:00", "responsibleId": ANDY}
    assert call("crm.activity.todo.add", todo) == 200 and fake.errors == []
    assert call("crm.activity.todo.add", {**todo, "ownerId": 13}) == 400  # no such contact
    assert call("crm.activity.todo.add", {**todo, "responsibleId": 99}) == 400  # no such user
    assert call("crm.activity.todo.add", {k: v for k, v in todo.items() if k != "deadline"}) == 400
    assert call("crm.activity.todo.add", {**todo, "deadline": "tomorrow"}) == 400
    assert call("crm.activity.todo.add", {**todo, "COMMUNICATIONS": "x"}) == 200
    assert call("crm.activity.update", {"id": 1, "fields": {"COMPLETED": "yes"}}) == 200
    assert call("crm.activity.update", {"id": 1}) == 400
    assert call("crm.activity.update", {"id": 77, "fields": {"COMPLETED": "Y"}}) == 400  # no such activity
    assert call("crm.activity.list", {"filter": {"NOTE": "x"}}) == 200
    assert fake.errors == [
        "crm.activity.todo.add: no deadline",
        "crm.activity.todo.add: deadline is not ISO 8601: 'tomorrow'",
        "crm.activity.todo.add: unknown parameters ['COMMUNICATIONS']",
        "crm.activity.update: COMPLETED must be Y or N",
        "crm.activity.update: no fields",
        "crm.activity.list: NOTE is no activity field",
    ]


def test_two_missed_calls_of_one_caller_in_one_batch_count_the_due_time_from_the_first(portal: Portal) -> None:
    # Stored and handed to delivery in the wrong order: the later call first, as a PBX retry can do.
    later, earlier = missed(portal, 2, CONTACT_PHONE, T0 + timedelta(minutes=4)), missed(portal, 1, CONTACT_PHONE)
    portal.store(later, earlier)
    portal.deliver()
    [todo] = portal.fake.todos()
    assert datetime.fromisoformat(todo["DEADLINE"]) == T0 + timedelta(minutes=30)  # from the first missed call
    assert portal.answer(earlier["call_id"])["callback"] == f"callback: task {todo['ID']} opened"
    assert "joined task" in portal.answer(later["call_id"])["callback"]
