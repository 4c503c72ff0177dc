"""The amoCRM connector against the strict fake account on 127.0.0.1 (over HTTP) and the Calls table
on moto: calls filed on the card their last 10 digits match, with their status, manager and
recording; exactly once although amoCRM's `uniq` stores a resent call twice (every answer lost after
saving, a delivery sent again after it succeeded); unknown callers as one incoming lead each; the
account's 7 requests a second. Notifications, lookup, users, tasks and OAuth:
tests/integration/test_kommo_features.py. The day through the local runtime:
tests/e2e/test_kommo_busy_day_e2e.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from callbridge import registry
from callbridge.core.config import UserMapping
from callbridge.core.model import Call
from callbridge.crm.base import Connector, DeliveryContext, RecordResult
from callbridge.crm.kommo.api import KommoApi
from callbridge.infra.http import RetryPolicy
from callbridge.infra.netguard import normalize_hosts
from tests.contract.conftest import T0, account_id, stack_env  # noqa: F401  (fixtures, by import)
from tests.contract.test_crm_contract import canonical
from tests.fakes.crm_server import serve
from tests.fakes.kommo import FakeKommo
from tests.support import host_port

pytestmark = pytest.mark.timeout(60)
TOKEN = "integration-kommo-long-lived-token-01"
ONCE = RetryPolicy(attempts=1)  # an HTTP failure goes straight back to the engine, as after the retries


class Account:
    def __init__(self, fake: FakeKommo, url: str, account: str):
        self.fake, self.url, self.account = fake, url, account

    def connector(self, **settings: Any) -> Connector:
        model = registry.crm_settings_model("kommo")
        crm = model.model_validate({"kind": "kommo", "name": "kommo", "base_url": self.url, "token": TOKEN, **settings})
        crm._trusted_hosts = normalize_hosts([host_port(self.url)])  # what AccountConfig gives a trusted fake
        ctx = DeliveryContext(
            account=self.account,
            timezone="Europe/Moscow",
            users=[
                UserMapping.model_validate({"pbx_user": "andy", "extension": "101", "kommo_user_id": 7}),
                UserMapping.model_validate({"pbx_user": "boris", "extension": "103", "kommo_user_id": 9}),
            ],
            recording_url=lambda call_id: f"https://bridge.example.com/v1/{self.account}/recordings/{call_id}?sig=x",
        )
        return registry.connector(crm, ctx, retry=ONCE)

    def send(self, calls: list[dict[str, Any]], recorded: bool = False, **settings: Any) -> list[RecordResult]:
        connector = self.connector(**settings)
        try:
            built = [connector.records(Call.from_item(c), recorded) for c in calls]
            assert all(not b.rejected for b in built), [b.rejected for b in built]
            return connector.send([r for b in built for r in b.records])
        finally:
            connector.close()


@pytest.fixture
def amo(account_id: str) -> Iterator[Account]:  # noqa: F811
    fake = FakeKommo(token=TOKEN)
    with serve(fake) as url:  # stopped on exit, whatever the test did
        yield Account(fake, url, account_id)
    assert fake.errors == [], "the connector broke amoCRM's protocol"
    assert fake.throttled == 0, "the connector went over the account's 7 requests a second"


def day(account: str, count: int = 2, direction: str = "in", outcome: str = "answered") -> list[dict[str, Any]]:
    return [canonical(account, n, direction, outcome, 30 + n, started=T0 - timedelta(minutes=n)) for n in range(count)]


def kinds(results: list[RecordResult]) -> list[str]:
    return [r.kind for r in results]


def uniqs(fake: FakeKommo) -> list[str]:
    return sorted(str(c["uniq"]) for c in fake.filed())


def test_a_call_is_filed_on_the_card_its_last_ten_digits_match(amo: Account) -> None:
    [call] = day(amo.account, 1)
    # The contact's phone as a person typed it: national, with a trunk prefix and punctuation.
    contact = amo.fake.add_contact("8 (916) 555-00-00", "Ivan Petrov", leads=1)
    assert kinds(amo.send([call], recorded=True)) == ["ok"]
    [filed] = amo.fake.filed()
    lead = amo.fake.contacts[contact]["leads"][0]
    assert filed["entity"] == f"leads:{lead}"  # the contact's only active lead, as amoCRM files it
    assert filed["via"] == "note" and filed["uniq"] == call["call_id"] and filed["phone"] == "+79165550000"
    assert (filed["direction"], filed["call_status"], filed["duration"]) == ("inbound", 4, 30)
    assert (filed["responsible_user_id"], filed["created_by"]) == (7, 7)
    assert filed["created_at"] == int(T0.timestamp())  # the call's own start, UTC epoch
    assert filed["link"].startswith(f"https://bridge.example.com/v1/{amo.account}/recordings/{call['call_id']}")


def test_statuses_map_to_amocrms_enum(amo: Account) -> None:
    calls = [
        canonical(amo.account, 1, "in", "missed", 0),
        canonical(amo.account, 2, "out", "no_answer", 0),
        canonical(amo.account, 3, "out", "busy", 0),
    ]
    for call in calls:
        amo.fake.add_contact(call["phone"])
    assert kinds(amo.send(calls)) == ["ok"] * 3
    found = {c["uniq"]: (c["direction"], c["call_status"]) for c in amo.fake.filed()}
    assert found == {"k0001": ("inbound", 6), "k0002": ("outbound", 6), "k0003": ("outbound", 7)}


def test_the_fake_keeps_a_resent_call_twice_so_exactly_once_is_ours(amo: Account) -> None:
    """amoCRM's `uniq` is kept, not checked (docs/protocols/kommo.md, quirk 1)."""
    amo.fake.add_contact("+79165550001")
    call = {"direction": "inbound", "uniq": "same", "duration": 1, "source": "t", "phone": "+79165550001"}
    with httpx.Client(base_url=amo.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for _ in range(2):
            assert client.post("/api/v4/calls", json=[call]).status_code == 200
    assert uniqs(amo.fake) == ["same", "same"]


def test_an_answer_lost_after_amocrm_saved_is_found_and_not_added_again(amo: Account) -> None:
    calls = day(amo.account, 3)
    for call in calls:
        amo.fake.add_contact(call["phone"])
    amo.fake.fail_after_save["/api/v4/calls"] = 1
    assert kinds(amo.send(calls)) == ["transient"] * 3
    assert len(amo.fake.filed()) == 3  # saved; the answer was lost
    results = amo.send(calls)
    assert kinds(results) == ["ok"] * 3 and all(r.detail.get("duplicate") for r in results)
    assert uniqs(amo.fake) == sorted(c["call_id"] for c in calls)  # once each
    assert amo.fake.requests.count(("POST", "/api/v4/calls")) == 1


def test_a_delivery_sent_again_after_success_costs_no_request(amo: Account) -> None:
    calls = day(amo.account)
    for call in calls:
        amo.fake.add_contact(call["phone"])
    assert kinds(amo.send(calls, recorded=True)) == ["ok", "ok"]
    requests = len(amo.fake.requests)
    results = amo.send(calls, recorded=True)
    assert kinds(results) == ["ok", "ok"] and all(r.detail.get("duplicate") for r in results)
    assert len(amo.fake.requests) == requests and len(amo.fake.filed()) == 2


def test_an_unknown_caller_is_one_incoming_lead_and_his_next_calls_notes_on_it(amo: Account) -> None:
    first, second, third = day(amo.account, 3)
    second.update(phone=first["phone"])
    third.update(phone=first["phone"], outcome="missed", duration=0, users_rang={"andy"})
    third.pop("user")
    assert kinds(amo.send([first])) == ["ok"]
    assert kinds(amo.send([second, third], recorded=True)) == ["ok", "ok"]
    [entry] = amo.fake.unsorted
    assert entry["metadata"]["uniq"] == first["call_id"] and entry["category"] == "sip"
    lead = entry["_embedded"]["leads"][0]["id"]
    filed = sorted(amo.fake.filed(), key=lambda c: str(c["uniq"]))
    assert [(c["uniq"], c["via"], c["entity"]) for c in filed] == [
        (first["call_id"], "unsorted", f"leads:{lead}"),
        (second["call_id"], "note", f"leads:{lead}"),
        (third["call_id"], "note", f"leads:{lead}"),
    ]
    assert filed[2]["call_status"] == 6 and filed[1]["link"]


def test_two_calls_of_one_unknown_caller_in_one_batch_make_one_lead(amo: Account) -> None:
    first, second = day(amo.account)
    second.update(phone=first["phone"])
    assert kinds(amo.send([first, second])) == ["ok", "ok"]
    assert len(amo.fake.unsorted) == 1 and uniqs(amo.fake) == sorted([first["call_id"], second["call_id"]])


def test_a_lost_incoming_lead_answer_makes_no_second_lead(amo: Account) -> None:
    [call] = day(amo.account, 1)
    amo.fake.fail_after_save["/api/v4/leads/unsorted/sip"] = 1
    assert kinds(amo.send([call])) == ["transient"]
    results = amo.send([call])
    assert kinds(results) == ["ok"] and results[0].detail.get("duplicate")
    assert len(amo.fake.unsorted) == 1 and uniqs(amo.fake) == [call["call_id"]]


def test_a_lost_note_answer_on_an_incoming_lead_is_not_added_twice(amo: Account) -> None:
    first, second = day(amo.account)
    second.update(phone=first["phone"])
    assert kinds(amo.send([first])) == ["ok"]
    amo.fake.fail_after_save["/api/v4/leads/notes"] = 1
    assert kinds(amo.send([second])) == ["transient"]
    assert kinds(amo.send([second])) == ["ok"]
    assert uniqs(amo.fake) == sorted([first["call_id"], second["call_id"]])


def test_a_caller_whose_incoming_lead_was_rejected_gets_a_new_one(amo: Account) -> None:
    first, second = day(amo.account)
    second.update(phone=first["phone"])
    assert kinds(amo.send([first])) == ["ok"]
    amo.fake.reject_lead(amo.fake.unsorted[0]["_embedded"]["leads"][0]["id"])
    assert kinds(amo.send([second])) == ["ok"]
    assert [u["status"] for u in amo.fake.unsorted] == ["declined", "pending"]
    assert uniqs(amo.fake) == [second["call_id"]] and amo.fake.filed()[0]["via"] == "unsorted"


def test_unknown_numbers_skip_stores_nothing_and_settles(amo: Account) -> None:
    calls = day(amo.account)
    results = amo.send(calls, unknown_numbers="skip")
    assert kinds(results) == ["ok", "ok"] and all(r.detail.get("skipped") for r in results)
    assert amo.fake.filed() == [] and amo.fake.unsorted == []
    assert kinds(amo.send(calls, unknown_numbers="skip")) == ["ok", "ok"]
    assert amo.fake.requests.count(("POST", "/api/v4/calls")) == 1  # settled: not sent again


def test_an_outgoing_call_to_an_unknown_number_makes_its_contact_then_the_call(amo: Account) -> None:
    [call] = day(amo.account, 1, direction="out")
    assert kinds(amo.send([call])) == ["ok"]
    [contact] = amo.fake.contacts.values()
    assert contact["visible"] and contact["responsible_user_id"] == 7
    [filed] = amo.fake.filed()
    assert filed["entity"] == f"contacts:{contact['id']}" and filed["direction"] == "outbound"
    assert amo.fake.unsorted == []


def test_a_call_amocrm_refuses_on_a_known_number_is_rejected_alone(amo: Account) -> None:
    calls = day(amo.account, 3)
    for call in calls:
        amo.fake.add_contact(call["phone"])
    amo.fake.refuse(calls[1]["phone"])
    results = amo.send(calls)
    assert kinds(results) == ["ok", "rejected", "ok"] and "Forbidden" in results[1].reason
    assert amo.fake.unsorted == []


def test_the_client_stays_under_the_limit_and_honours_a_429(amo: Account) -> None:
    """Figures: 14 requests through one client take ~2 s (6 a second); a client allowed 100 a second
    meets the fake's 429, waits its Retry-After and loses nothing."""
    paced = KommoApi(amo.url, token=TOKEN, trusted_hosts=normalize_hosts([host_port(amo.url)]))
    began = time.monotonic()
    try:
        for _ in range(14):
            paced.request("GET", "/api/v4/account")
    finally:
        paced.close()
    assert time.monotonic() - began >= 2.0 and amo.fake.throttled == 0
    time.sleep(1.0)  # the fake's window empties
    eager = KommoApi(amo.url, token=TOKEN, rate_per_second=100.0, trusted_hosts=normalize_hosts([host_port(amo.url)]),
                     retry=RetryPolicy(attempts=4, backoff_initial_s=0.1, backoff_max_s=0.2, jitter_s=0))  # fmt: skip
    try:
        answers = [eager.request("GET", "/api/v4/account") for _ in range(10)]
    finally:
        eager.close()
    assert all(a["id"] for a in answers) and amo.fake.throttled >= 1
    amo.fake.throttled = 0  # provoked on purpose: the fixture's check is for the connector
