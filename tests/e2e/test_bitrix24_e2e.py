"""Bitrix24 end to end, through the local runtime (a real `python -m callbridge_local`): Cloud PBX
events and histories over HTTP → call cards and filed calls in a strict fake Bitrix24 portal on
127.0.0.1 (tests/fakes/bitrix24.py), a click in Bitrix24 ringing the manager through a fake Cloud
PBX, and the contact answer from Bitrix24's lookup. Faults: answers lost after the portal saved,
the portal's rate limit, repeated webhooks - and still one registered and finished call per call."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from callbridge.core.accounts import clear_account_cache
from callbridge.infra import aws, secrets
from callbridge.infra.settings import reset_settings
from callbridge_cli.main import cli
from callbridge_local.testing import LocalBridge, running_bridge
from tests.fakes import crm_server
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.cloudpbx_api import PATH as PBX_PATH
from tests.fakes.cloudpbx_api import FakeCloudPbx
from tests.integration.recording_server import RecordingServer, Reply
from tests.log_secrets import leaked_lines
from tests.support import form, seed_event, seed_history, trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CODE = "b24webhookcode0001"  # the inbound webhook's secret code
APP_TOKEN = "b24-application-token-0001"
PBX_TOKEN = "b24-pbx-api-token-0001"
CRM_TOKEN = "b24-crm-token-00001"
FORM = {"content-type": "application/x-www-form-urlencoded"}
AUDIO = b"ID3" + bytes(range(256)) * 8
ANDY, DARIA = 1, 2  # their USER_IDs in Bitrix24

ACCOUNT = """\
account: b24
timezone: Europe/Moscow
phone_region: RU
pbx:
  kind: cloudpbx
  api_url: {pbx}{pbx_path}
  token: {pbx_token}
  crm_tokens: [{crm_token}]
crms:
  - kind: bitrix24
    webhook_url: {portal}/rest/1/{code}/
    application_token: {app_token}
users:
  - {{pbx_user: andy, name: Andrey, extension: "101", bitrix24_user_id: 1}}
  - {{pbx_user: daria, name: Daria, extension: "102", bitrix24_user_id: 2}}
recordings:
  allow_hosts: ["127.0.0.1:{files_port}"]   # the test's file server (that port only): never on AWS
"""


@dataclass
class World:
    bridge: LocalBridge
    http: httpx.Client
    portal: FakeBitrix24
    pbx: FakeCloudPbx
    files: RecordingServer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    portal = FakeBitrix24(code=CODE, users={ANDY: "101", DARIA: "102"}, fetch_records=True)
    pbx = FakeCloudPbx(token=PBX_TOKEN)
    files = RecordingServer().start()
    accounts = tmp_path_factory.mktemp("accounts")
    try:
        files.route("/rec.mp3", Reply(200, AUDIO, {"Content-Type": "audio/mpeg"}))
        with ExitStack() as stack:  # every server and the runtime stopped, whatever happens
            portal_url = stack.enter_context(crm_server.serve(portal))
            pbx_url = stack.enter_context(crm_server.serve(pbx))
            text = ACCOUNT.format(portal=portal_url, code=CODE, app_token=APP_TOKEN, pbx=pbx_url, pbx_path=PBX_PATH,
                                  pbx_token=PBX_TOKEN, crm_token=CRM_TOKEN, files_port=files.port)  # fmt: skip
            (accounts / "b24.yaml").write_text(trusting_fakes_yaml(text), encoding="utf-8")
            # The quiet time outlasts DeliveryFunction's 2 s batching window, as on AWS (30 s against
            # 2 s): a card still waiting in a batch goes out before its call is settled and finished
            # (Bitrix24 drops a finished call's cards itself, so a later hide would be refused).
            params = {"DeliveryRetryBaseSeconds": "0", "MissedCallSettleSeconds": "4", "ContactBudgetMs": "1000"}
            bridge = stack.enter_context(running_bridge(accounts, params=params))
            http = stack.enter_context(httpx.Client(base_url=bridge.base_url, timeout=120))
            yield World(bridge, http, portal, pbx, files)
            output = bridge.output()
    finally:
        files.stop()
    leaked = leaked_lines(output, {CODE, APP_TOKEN, PBX_TOKEN, CRM_TOKEN})
    assert not leaked, "secrets in the runtime's log lines:\n" + "\n".join(leaked)


def pbx_post(world: World, fields: dict[str, Any]) -> None:
    response = world.http.post("/v1/b24/cloudpbx", content=form(**{**fields, "crm_token": CRM_TOKEN}), headers=FORM)
    assert response.status_code == 200, response.text


def drain(world: World) -> None:
    # What is due now: an answered call's settle waits HistoryQuietSeconds (15 min) for a history
    # these tests send themselves, so a drain must not wait for it.
    response = world.http.post("/_local/queues/drain", params={"timeout": "120", "delayed": "0"})
    assert response.status_code == 200, response.text


def event(world: World, kind: str, user: str, callid: str, phone: str) -> None:
    """One Cloud PBX event, handled through to the portal before the next (cards in order)."""
    pbx_post(world, seed_event(kind, user, callid=callid, phone=phone))
    drain(world)


def history(callid: str, phone: str, user: str, **fields: Any) -> dict[str, Any]:
    return seed_history(callid=callid, phone=phone, user=user, start="20240501T090000Z", **fields)


def filed_by_phone(portal: FakeBitrix24) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for call in portal.filed():
        found.setdefault(call["PHONE_NUMBER"], []).append(call)
    return found


def settle(world: World, wanted: int, seconds: float = 60.0) -> None:
    """Queues and the scheduled drain until the portal filed `wanted` calls (deliveries the rate
    limit or a lost answer sent back to wait are due again at once: DeliveryRetryBaseSeconds=0)."""
    deadline = time.monotonic() + seconds
    while len(world.portal.finished) < wanted and time.monotonic() < deadline:
        drain(world)
        response = world.http.post("/_local/schedules/DeliveryDrainFunction")
        assert response.status_code == 200, response.text
    assert len(world.portal.finished) >= wanted, world.bridge.output()[-4000:]


def cards_of(portal: FakeBitrix24, call_id: str) -> list[tuple[str, tuple[int, ...]]]:
    return [(action, users) for action, card_call, users in portal.cards if card_call == call_id]


def test_a_day_of_calls_is_filed_once_with_cards_statuses_and_recordings(world: World) -> None:
    portal, link = world.portal, world.files.url("/rec.mp3")
    # Group-rung, answered by andy: both phones ring, daria's stops when andy answers.
    for kind, user in (("INCOMING", "andy"), ("INCOMING", "daria"), ("ACCEPTED", "andy"), ("CANCELLED", "daria"),
                       ("COMPLETED", "andy")):  # fmt: skip
        event(world, kind, user, "day-group", "79160000001")
    # Group-rung, missed: both stop ringing.
    for kind, user in (("INCOMING", "andy"), ("INCOMING", "daria"), ("CANCELLED", "andy"), ("CANCELLED", "daria")):
        event(world, kind, user, "day-missed", "79160000002")
    # daria dials out, the client answers.
    for kind in ("OUTGOING", "COMPLETED"):
        event(world, kind, "daria", "day-out", "79160000003")
    assert portal.errors == []
    [group] = [c for c, call in portal.calls.items() if call["PHONE_NUMBER"] == "+79160000001"]
    [missed] = [c for c, call in portal.calls.items() if call["PHONE_NUMBER"] == "+79160000002"]
    [out] = [c for c, call in portal.calls.items() if call["PHONE_NUMBER"] == "+79160000003"]
    assert cards_of(portal, group) == [("show", (ANDY,)), ("show", (DARIA,)), ("hide", (DARIA,)), ("hide", (ANDY,))]
    assert cards_of(portal, missed) == [("show", (ANDY,)), ("show", (DARIA,)), ("hide", (ANDY,)), ("hide", (DARIA,))]
    assert cards_of(portal, out) == [("show", (DARIA,)), ("hide", (DARIA,))]
    # Nothing is filed before the PBX's history - but the call nobody answered, settled as missed
    # after the quiet time (MissedCallSettleSeconds=4), under the CALL_ID its cards had.
    assert set(portal.finished) <= {missed}

    # The histories, under faults: every first answer of register, finish and attachRecord is lost
    # after the portal saved, and other applications have spent the portal's request bucket.
    portal.lose_answers.update({"telephony.externalcall.register": 1, "telephony.externalcall.finish": 1,
                                "telephony.externalCall.attachRecord": 1})  # fmt: skip
    portal.limit_next = 3
    days = [
        history("day-group", "79160000001", "andy", duration="60", link=link),
        history("day-missed", "79160000002", "andy", status="missed", duration="0", link=None),
        history("day-out", "79160000003", "daria", type="out", duration="30", link=link),
        history("day-busy", "79160000004", "andy", type="out", status="Busy", duration="0", link=None),
        history("day-plain", "79160000005", "daria", duration="45", link=link),  # no events: a new call
    ]
    for fields in days:
        pbx_post(world, fields)
        pbx_post(world, fields)  # the PBX sends a history again: nothing twice
    settle(world, 5)
    time.sleep(1.0)
    settle(world, 5)

    assert portal.errors == [], portal.errors
    filed = filed_by_phone(portal)
    assert {phone: len(calls) for phone, calls in filed.items()} == {f"+7916000000{n}": 1 for n in range(1, 6)}
    assert len(portal.calls) == 5  # one registered call per call: the cards' calls were finished
    summary = {p: (c[0]["TYPE"], c[0]["USER_ID"], c[0]["DURATION"], c[0]["STATUS_CODE"]) for p, c in filed.items()}
    assert summary == {
        "+79160000001": (2, ANDY, 60, "200"),
        "+79160000002": (2, ANDY, 0, "304"),
        "+79160000003": (1, DARIA, 30, "200"),
        "+79160000004": (1, ANDY, 0, "486"),
        "+79160000005": (2, DARIA, 45, "200"),
    }
    assert filed["+79160000001"][0]["CALL_ID"] == group and filed["+79160000003"][0]["CALL_ID"] == out
    recorded = {portal.calls[c]["PHONE_NUMBER"] for c in portal.records}
    assert recorded == {"+79160000001", "+79160000003", "+79160000005"}
    assert all(audio == AUDIO for audio in portal.records.values())  # the portal downloaded and plays them
    assert portal.lose_answers == {k: 0 for k in portal.lose_answers}  # every fault was hit
    assert portal.limited == 3  # the limit errors cost nothing, and our own pace never overflowed the bucket
    assert sorted(portal.leads) == [f"+7916000000{n}" for n in range(1, 6)]  # CRM_CREATE: unknown numbers

    # Later runs find nothing to do.
    methods = len(portal.methods)
    drain(world)
    assert world.http.post("/_local/schedules/DeliveryDrainFunction").status_code == 200
    assert len(portal.methods) == methods


def test_a_click_in_bitrix24_rings_the_manager_and_that_call_is_finished_not_registered(world: World) -> None:
    portal = world.portal
    click = portal.click(ANDY, "+79160000077")
    registered = len(portal.calls)
    refused = world.http.post("/v1/b24/bitrix24/make-call", content=form(**click, **{"auth[application_token]": "x" * 26}),
                              headers=FORM)  # fmt: skip
    assert (refused.status_code, refused.json()) == (401, {"error": "Invalid clientId"})
    as_json = world.http.post("/v1/b24/bitrix24/make-call", json={**click, "auth[application_token]": APP_TOKEN})
    assert (as_json.status_code, as_json.json()) == (
        415,
        {"error": "Content-Type must be application/x-www-form-urlencoded"},
    )
    assert world.pbx.calls("makeCall") == []

    response = world.http.post("/v1/b24/bitrix24/make-call", content=form(**click, **{"auth[application_token]": APP_TOKEN}),
                               headers=FORM)  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["user"] == "andy"
    assert world.pbx.calls("makeCall") == [
        {"cmd": "makeCall", "phone": "79160000077", "user": "andy", "token": PBX_TOKEN}
    ]

    # The PBX's call: its events and history. Bitrix24 shows its own card for the click; ours goes
    # to the same CALL_ID, and the call is finished under it.
    for kind in ("OUTGOING", "COMPLETED"):
        event(world, kind, "andy", "click-1", "79160000077")
    pbx_post(world, history("click-1", "79160000077", "andy", type="out", duration="20", link=None))
    before = len(portal.finished)
    settle(world, before + 1)
    assert portal.errors == []
    assert len(portal.calls) == registered  # Bitrix24's registration was the only one
    assert portal.finished[click["data[CALL_ID]"]]["DURATION"] == 20
    assert portal.finished[click["data[CALL_ID]"]]["USER_ID"] == ANDY


def test_the_contact_answer_names_bitrix24s_responsible_manager(world: World) -> None:
    world.portal.entities["+79160000088"] = {
        "CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": 12, "NAME": "Иван Клиентов", "ASSIGNED_BY_ID": str(DARIA),
        "ASSIGNED_BY": {"ID": str(DARIA), "TIMEMAN_STATUS": "OPENED", "USER_PHONE_INNER": "102"},
    }  # fmt: skip
    fields = {"cmd": "contact", "phone": "79160000088", "crm_token": CRM_TOKEN, "callid": "contact-1"}
    response = world.http.post("/v1/b24/cloudpbx", content=form(**fields), headers=FORM)
    assert response.status_code == 200, response.text
    assert response.json() == {"contact_name": "Иван Клиентов", "responsible": "daria"}
    searches = world.portal.methods.count("telephony.externalCall.searchCrmEntities")
    response = world.http.post("/v1/b24/cloudpbx", content=form(**{**fields, "callid": "contact-2"}), headers=FORM)
    assert response.json() == {"contact_name": "Иван Клиентов", "responsible": "daria"}
    assert world.portal.methods.count("telephony.externalCall.searchCrmEntities") == searches  # cached


def cli_run(bridge: LocalBridge, *args: str) -> Any:
    saved = dict(os.environ)
    try:
        return CliRunner().invoke(cli, ["--local", bridge.base_url, *args], catch_exceptions=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_settings()
        aws.reset_clients()
        secrets.reset_secret_cache()
        clear_account_cache()


def test_the_operator_sees_the_portals_users_beside_the_pbx_users_and_what_to_paste(
    world: World, tmp_path: Path
) -> None:
    world.portal.users[3] = "103"  # a portal user nobody mapped
    result = cli_run(world.bridge, "bitrix24", "users", "b24", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert {(u["id"], u["inner_phone"], u["pbx_user"]) for u in listed["users"]} == {
        ("1", "101", "andy"), ("2", "102", "daria"), ("3", "103", None)
    }  # fmt: skip
    assert listed["mappings_naming_nobody"] == []
    text = ACCOUNT.format(portal="https://portal.example.com", code=CODE, app_token=APP_TOKEN,
                          pbx="https://pbx.example.com", pbx_path=PBX_PATH, pbx_token=PBX_TOKEN,
                          crm_token=CRM_TOKEN, files_port=443).replace("account: b24", "account: b24paste")  # fmt: skip
    (tmp_path / "b24paste.yaml").write_text(text, encoding="utf-8")
    applied = cli_run(world.bridge, "accounts", "apply", str(tmp_path / "b24paste.yaml"))
    assert applied.exit_code == 0, applied.output
    assert "/v1/b24paste/bitrix24/make-call" in applied.output
    assert CODE not in applied.output and APP_TOKEN not in applied.output
