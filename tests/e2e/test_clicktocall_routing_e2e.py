"""Click-to-call, manager status, routing in `contact` and the PBX user sync, through the local
runtime (a real `python -m callbridge_local`) with fake Cloud PBX, telediscount and retailCRM
servers on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from callbridge_local.testing import running_bridge
from tests.fakes import base as td_server
from tests.fakes import crm_server
from tests.fakes.cloudpbx_api import PATH as PBX_PATH
from tests.fakes.cloudpbx_api import FakeCloudPbx, FakeManagerCrm
from tests.fakes.telediscount import FakeTelediscount
from tests.support import form, trusting_fakes_yaml

pytestmark = pytest.mark.e2e

SEED_PBX_TOKEN = "5f317b9f-e86c-41f7-a6fc-c76eb0da0000"  # the Cloud PBX vendor documentation's makeCall example
# The vendor documentation's clientId (2dbh26tahjj26sg) has 15 characters; our config asks 16+ of a clientId.
CLIENT_ID = "2dbh26tahjj26sg0"
CRM_TOKEN = "routed-crm-token-0001"
API_KEY = "routed-api-key-000000001"
CRM_KEY = "routed-retailcrm-key"
PBX_TIMEOUT_S = 1
MANAGER_1 = {"id": 1, "firstName": "Андрей", "lastName": "Петров", "code": "100"}

ROUTED = """\
account: routed
phone_region: RU
pbx:
  kind: cloudpbx
  api_url: {pbx}{pbx_path}
  token: {pbx_token}
  crm_tokens: [{crm_token}]
api_keys: [{api_key}]
crms:
  - kind: retailcrm
    base_url: {crm}
    api_key: {crm_key}
    client_id: {client_id}
users:
  - {{pbx_user: andy, name: Andrey Petrov, extension: "100", retailcrm_user_id: 1}}
  - {{pbx_user: daria, name: Daria Ivanova, extension: "200", retailcrm_user_id: 2}}
contacts:
  - {{name: Directory Client, phones: ["+79100000001"], responsible: daria}}
"""
TELE = """\
account: tele
phone_region: RU
pbx:
  kind: telediscount
  api_url: {tele}/api.php/telephony
  api_key: tele-abonent-key-0001
  webhook_secret: tele-webhook-secret-0001
crms:
  - kind: retailcrm
    base_url: {crm}
    api_key: {crm_key}
    client_id: tele-client-id-000001
users:
  - {{pbx_user: manager1, extension: "100", sip_account: "SIP/00000000672", retailcrm_user_id: 1}}
"""
# A Cloud PBX nobody listens for (port 9, discard): connection refused.
DOWN = """\
account: nopbx
phone_region: RU
pbx:
  kind: cloudpbx
  api_url: http://127.0.0.1:9{pbx_path}
  token: nopbx-token-0001
  crm_tokens: [nopbx-crm-token-0001]
api_keys: [nopbx-api-key-0000000001]
users:
  - {{pbx_user: andy, extension: "100"}}
"""


@dataclass
class World:
    bridge: Any
    http: httpx.Client
    pbx: FakeCloudPbx
    crm: FakeManagerCrm
    tele: FakeTelediscount


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pbx = FakeCloudPbx(token=SEED_PBX_TOKEN)
    crm = FakeManagerCrm(api_key=CRM_KEY)
    tele = FakeTelediscount(api_key="tele-abonent-key-0001")
    accounts = tmp_path_factory.mktemp("accounts")
    with ExitStack() as stack:
        pbx_url = stack.enter_context(crm_server.serve(pbx))
        crm_url = stack.enter_context(crm_server.serve(crm))
        tele_url = stack.enter_context(td_server.serve(tele))
        values = {
            "pbx": pbx_url,
            "pbx_path": PBX_PATH,
            "pbx_token": SEED_PBX_TOKEN,
            "crm_token": CRM_TOKEN,
            "api_key": API_KEY,
            "crm": crm_url,
            "crm_key": CRM_KEY,
            "client_id": CLIENT_ID,
            "tele": tele_url,
        }
        for name, text in (("routed", ROUTED), ("tele", TELE), ("nopbx", DOWN)):
            (accounts / f"{name}.yaml").write_text(trusting_fakes_yaml(text.format(**values)), encoding="utf-8")
        bridge = stack.enter_context(
            running_bridge(accounts, params={"PbxTimeoutSeconds": str(PBX_TIMEOUT_S), "ContactBudgetMs": "1000"})
        )
        http = stack.enter_context(httpx.Client(base_url=bridge.base_url, timeout=15))
        yield World(bridge, http, pbx, crm, tele)


def contact(world: World, phone: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    response = world.http.post(
        "/v1/routed/cloudpbx",
        content=form(cmd="contact", phone=phone, crm_token=CRM_TOKEN, callid=f"c-{phone}-{time.time()}"),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return response.json(), elapsed


def status(world: World, state: str, client_id: str = CLIENT_ID) -> httpx.Response:
    return world.http.get(
        "/v1/routed/retailcrm/user-status",
        params={"clientId": client_id, "code": "100", "userId": "1", "status": state},
    )


# -- click-to-call -------------------------------------------------------------------------------


def test_retailcrm_click_sends_the_seed_makecall_form(world: World):
    before = len(world.pbx.calls("makeCall"))
    # Exactly as retailCRM sends it (the retailCRM vendor documentation): an unencoded '+', which decodes to a space.
    response = world.http.get(
        f"/v1/routed/retailcrm/make-call?clientId={CLIENT_ID}&code=100&phone=+79101234567&userId=1"
    )
    assert response.status_code == 200, response.text
    assert response.json()["user"] == "andy"
    # docs/protocols/cloudpbx.md (vendor §4.2.2), field for field.
    assert world.pbx.calls("makeCall")[before:] == [
        {"cmd": "makeCall", "phone": "79101234567", "user": "andy", "token": SEED_PBX_TOKEN}
    ]
    assert world.pbx.errors == []


def test_retailcrm_click_by_user_id_and_formatted_phone(world: World):
    before = len(world.pbx.calls("makeCall"))
    response = world.http.get(
        "/v1/routed/retailcrm/make-call", params={"clientId": CLIENT_ID, "userId": "2", "phone": "8 (910) 123-45-67"}
    )
    assert response.status_code == 200, response.text
    assert world.pbx.calls("makeCall")[before:] == [
        {"cmd": "makeCall", "phone": "79101234567", "user": "daria", "token": SEED_PBX_TOKEN}
    ]


@pytest.mark.parametrize("client_id", ["wrong-client-id-0001", "", CLIENT_ID[:-1]])
def test_wrong_client_id_is_refused_without_calling_the_pbx(world: World, client_id: str):
    before = len(world.pbx.requests)
    response = world.http.get(
        "/v1/routed/retailcrm/make-call", params={"clientId": client_id, "code": "100", "phone": "+79101234567"}
    )
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid clientId"}
    assert len(world.pbx.requests) == before


def test_unknown_account_answers_like_a_wrong_client_id(world: World):
    response = world.http.get(
        "/v1/nosuch/retailcrm/make-call", params={"clientId": CLIENT_ID, "code": "100", "phone": "+79101234567"}
    )
    assert (response.status_code, response.json()) == (401, {"error": "Invalid clientId"})


def test_external_phone_is_the_caller_id_shown(world: World):
    before = len(world.pbx.calls("makeCall"))
    response = world.http.get(
        f"/v1/routed/retailcrm/make-call?clientId={CLIENT_ID}&code=100&phone=+79101234567&userId=1"
        "&externalPhone=%2B7-499-999-99-99"
    )
    assert response.status_code == 200, response.text
    assert world.pbx.calls("makeCall")[before:] == [
        {"cmd": "makeCall", "phone": "79101234567", "user": "andy", "token": SEED_PBX_TOKEN, "clid": "74999999999"}
    ]


def test_unmapped_code_is_a_clear_404(world: World):
    before = len(world.pbx.requests)
    response = world.http.get(
        "/v1/routed/retailcrm/make-call", params={"clientId": CLIENT_ID, "code": "999", "phone": "+79101234567"}
    )
    assert response.status_code == 404 and "No PBX user" in response.json()["error"]
    assert len(world.pbx.requests) == before


def test_slow_pbx_gives_an_error_status_within_the_timeout(world: World):
    world.pbx.delay_s = 3.0
    try:
        started = time.perf_counter()
        response = world.http.get(
            "/v1/routed/retailcrm/make-call", params={"clientId": CLIENT_ID, "code": "100", "phone": "+79101234567"}
        )
        elapsed = time.perf_counter() - started
    finally:
        world.pbx.delay_s = 0.0
    assert response.status_code == 504, response.text
    assert "did not answer within 1 s" in response.json()["error"]
    assert elapsed < PBX_TIMEOUT_S + 1.0


def test_unreachable_pbx_gives_a_502(world: World):
    response = world.http.post(
        "/v1/nopbx/calls",
        json={"extension": "100", "phone": "+79101234567"},
        headers={"authorization": "Bearer nopbx-api-key-0000000001"},
    )
    assert response.status_code == 502, response.text
    assert "could not be reached" in response.json()["error"]


def test_pbx_refusal_is_not_a_200(world: World):
    saved = list(world.pbx.accounts)
    world.pbx.accounts[:] = [a for a in saved if a["name"] != "andy"]  # the PBX no longer knows andy
    try:
        response = world.http.post(
            "/v1/routed/calls",
            json={"user": "andy", "phone": "+79101234567"},
            headers={"authorization": f"Bearer {API_KEY}"},
        )
    finally:
        world.pbx.accounts[:] = saved
    assert response.status_code == 502, response.text
    assert response.json() == {"error": "the PBX refused the request (400: Invalid parameters)"}


def test_unmapped_api_user_never_reaches_the_pbx(world: World):
    before = len(world.pbx.requests)
    response = world.http.post(
        "/v1/routed/calls",
        json={"user": "ghost", "phone": "+79101234567"},
        headers={"authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 404
    assert len(world.pbx.requests) == before


def test_api_calls_with_the_account_key(world: World):
    before = len(world.pbx.calls("makeCall"))
    response = world.http.post(
        "/v1/routed/calls",
        json={"extension": "200", "phone": "+44 20 7946 0018"},
        headers={"authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "calling",
        "user": "daria",
        "phone": "+442079460018",
        "pbx_call_id": response.json()["pbx_call_id"],
    }
    assert world.pbx.calls("makeCall")[before:] == [
        {"cmd": "makeCall", "phone": "442079460018", "user": "daria", "token": SEED_PBX_TOKEN}
    ]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key-000000000001", f"Basic {API_KEY}"])
def test_api_calls_without_the_key_are_refused(world: World, authorization: str | None):
    before = len(world.pbx.requests)
    headers = {"authorization": authorization} if authorization else {}
    response = world.http.post("/v1/routed/calls", json={"user": "andy", "phone": "+79101234567"}, headers=headers)
    assert response.status_code == 401
    assert len(world.pbx.requests) == before


def test_api_call_validation(world: World):
    response = world.http.post(
        "/v1/routed/calls", json={"phone": "+79101234567"}, headers={"authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 422
    response = world.http.post(
        "/v1/routed/calls",
        json={"user": "andy", "phone": "not a number"},
        headers={"authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 400 and response.json() == {"error": "phone is not a number we can dial"}


def test_telediscount_click_sends_outcome(world: World):
    response = world.http.get(
        "/v1/tele/retailcrm/make-call?clientId=tele-client-id-000001&code=100&phone=+74951234567&userId=1"
    )
    assert response.status_code == 200, response.text
    outcomes = [q for path, q in world.tele.requests if path.endswith("/outcome")]
    assert outcomes == [
        {"num_a": "SIP/00000000672", "num_b": "74951234567", "abonent_api_key": "tele-abonent-key-0001"}
    ]
    assert world.tele.errors == []


# -- manager status and routing ------------------------------------------------------------------


def test_user_status_checks_the_client_id_and_the_status(world: World):
    assert status(world, "free", client_id="wrong-client-id-0001").status_code == 401
    assert status(world, "asleep").status_code == 400
    assert status(world, "free").status_code == 200


def test_directory_hit_routes_to_its_responsible(world: World):
    answer, _ = contact(world, "79100000001")
    assert answer == {"contact_name": "Directory Client", "responsible": "daria"}
    assert world.crm.count("+79100000001") == 0


def test_crm_owner_free_then_busy(world: World):
    phone = "+79105550001"
    world.crm.owners[phone] = {"manager": MANAGER_1, "customer": {"firstName": "Иван", "lastName": "Клиентов"}}
    assert status(world, "free").status_code == 200
    answer, _ = contact(world, phone)
    assert answer == {"contact_name": "Иван Клиентов", "responsible": "andy"}
    assert world.crm.count(phone) == 1

    # retailCRM tells us andy went busy: the cached owner is no longer routed to.
    assert status(world, "busy").status_code == 200
    answer, _ = contact(world, phone)
    assert answer == {"contact_name": "Иван Клиентов"}
    assert world.crm.count(phone) == 1  # served from the cache

    assert status(world, "free").status_code == 200
    answer, _ = contact(world, phone)
    assert answer["responsible"] == "andy"
    assert world.crm.count(phone) == 1


def test_crm_names_nobody(world: World):
    phone = "+79105550002"  # unknown to retailCRM, or its manager is not free there
    answer, _ = contact(world, phone)
    assert answer == {}
    answer, _ = contact(world, phone)
    assert answer == {} and world.crm.count(phone) == 1  # "no manager" is cached too


def test_crm_down_answers_without_responsible_and_is_not_asked_at_every_ring(world: World):
    phone = "+79105550004"
    world.crm.owners[phone] = {"manager": MANAGER_1}
    world.crm.failing.add(phone)
    answer, _ = contact(world, phone)
    assert answer == {}
    answer, _ = contact(world, phone)
    assert answer == {} and world.crm.count(phone) == 1  # the failure is remembered for a while


def test_slow_crm_answers_within_budget_then_from_the_cache(world: World):
    phone = "+79105550003"
    world.crm.owners[phone] = {"manager": MANAGER_1, "customer": {"firstName": "Медленный"}}
    world.crm.delays[phone] = 5.0
    assert status(world, "free").status_code == 200

    answer, elapsed = contact(world, phone)
    assert answer == {}  # the PBX falls back to its own routing
    assert elapsed < 1.5, elapsed  # budget 1 s, plus the way through the local gateway

    deadline = time.monotonic() + 10
    while phone not in world.crm.answered and time.monotonic() < deadline:
        time.sleep(0.1)
    assert phone in world.crm.answered
    # The late answer is written to the cache after the CRM answered: wait for it, not for a guess.
    cache = world.bridge.client("dynamodb")
    key = {"account": {"S": "routed"}, "phone": {"S": phone}}
    cached: dict[str, Any] = {}
    while "pbx_user" not in cached and time.monotonic() < deadline + 10:
        time.sleep(0.05)
        table = world.bridge.env["ROUTING_CACHE_TABLE"]
        cached = cache.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item", {})
    assert "pbx_user" in cached, "the CRM's late answer never reached the routing cache"

    answer, elapsed = contact(world, phone)
    assert answer == {"contact_name": "Медленный", "responsible": "andy"}
    assert world.crm.count(phone) == 1
    item = cache.get_item(TableName=world.bridge.env["ROUTING_CACHE_TABLE"], Key=key)["Item"]
    assert item["pbx_user"] == {"S": "andy"}


# -- user sync -----------------------------------------------------------------------------------


def test_scheduled_user_sync_lists_unmapped_users(world: World):
    response = world.http.post("/_local/schedules/UserSyncFunction")
    assert response.status_code == 200, response.text
    result = response.json()
    report = result["synced"]["routed"]
    assert report["pbx_users"] == 5
    assert sorted(report["unmapped"]) == ["mike", "serg", "test"]
    assert sorted(report["mapped_seen"]) == ["andy", "daria"]
    assert "nopbx" in result["failed"] and "tele" not in result["synced"]
    # The metric an alarm can watch (EMF on the function's output).
    lines = world.bridge.wait_for_output('"UnmappedPbxUsers"')
    assert lines, "no UnmappedPbxUsers metric in the runtime's output"
    metric = json.loads(lines[-1][lines[-1].index("{") :])
    assert (metric["account"], metric["UnmappedPbxUsers"]) == ("routed", [3.0])
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CallBridge"

    table = world.bridge.env["ACCOUNTS_TABLE"]
    andy = world.bridge.client("dynamodb").get_item(
        TableName=table, Key={"pk": {"S": "ACCOUNT#routed"}, "sk": {"S": "USER#andy"}}
    )["Item"]
    assert andy["seen_in_pbx"] == {"BOOL": True}
    assert andy["real_name"] == {"S": "Петров Андрей"}
    assert andy["retailcrm_user_id"] == {"N": "1"}  # the mapping is kept
