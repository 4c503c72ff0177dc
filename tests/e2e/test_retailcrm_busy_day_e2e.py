"""The busy day into retailCRM, through the local runtime (a real `python -m callbridge_local`): 60 Cloud
PBX calls started two a second over HTTP (tests/e2e/busy_day.py, the day the Bitrix24 replay plays) -
answered, group-rung, missed, a redial, outgoing, withheld, and clicks in retailCRM (its make-call
request) whose `makeCall` the PBX answers with its call id or with an empty 200 - while the strict
fake retailCRM (tests/fakes/retailcrm.py) loses the answers of two uploads after saving them. It
ends with one retailCRM call per PBX call, each with its own start (±2 s), manager, duration and
result, every card shown closed by its `hangup` (no `out` card of a click left open), and nothing
sent twice but what a lost answer made us send again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from callbridge_local.testing import LocalBridge, running_bridge
from tests.e2e.busy_day import CLICKS, blind_numbers, callid_of, kind_of, phone_of, play_day
from tests.fakes import crm_server
from tests.fakes.cloudpbx_api import PATH as PBX_PATH
from tests.fakes.cloudpbx_api import FakeCloudPbx
from tests.fakes.retailcrm import FakeRetailCrm
from tests.integration.recording_server import RecordingServer, Reply
from tests.log_secrets import leaked_lines
from tests.support import form, trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CALLS = 60
EVERY_S = 0.5  # a call starts every half second
API_KEY = "rbusy-retailcrm-api-key-01"
CLIENT_ID = "rbusy-client-id-000001"
PBX_TOKEN = "rbusy-pbx-api-token-0001"
CRM_TOKEN = "rbusy-crm-token-00001"
FORM = {"content-type": "application/x-www-form-urlencoded"}
MANAGERS = {"andy": (1, "101"), "daria": (2, "102")}  # PBX user -> (retailCRM userId, code)
ZONE = "Europe/Moscow"

ACCOUNT = """\
account: rbusy
timezone: Europe/Moscow
phone_region: RU
pbx:
  kind: cloudpbx
  api_url: {pbx}{pbx_path}
  token: {pbx_token}
  crm_tokens: [{crm_token}]
crms:
  - kind: retailcrm
    base_url: {crm}
    api_key: {api_key}
    client_id: {client_id}
users:
  - {{pbx_user: andy, name: Andrey, extension: "101", retailcrm_user_id: 1, retailcrm_code: "101"}}
  - {{pbx_user: daria, name: Daria, extension: "102", retailcrm_user_id: 2, retailcrm_code: "102"}}
recordings:
  allow_hosts: ["127.0.0.1:{files_port}"]   # the test's file server (that port only): never on AWS
"""

EXPECTED = {  # kind -> (type, manager, duration, result)
    "answered": ("in", "andy", 30, "answered"),
    "group": ("in", "daria", 40, "answered"),
    "missed": ("in", "daria", 0, "no answer"),  # daria's phone rang first (docs/missed-calls.md)
    "redial": ("in", "andy", 0, "no answer"),
    "out": ("out", "andy", 20, "answered"),
    "click": ("out", "andy", 25, "answered"),
    "blind_click": ("out", "daria", 25, "answered"),
}


@dataclass
class World:
    bridge: LocalBridge
    http: httpx.Client
    crm: FakeRetailCrm
    pbx: FakeCloudPbx
    files: RecordingServer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    crm, pbx, files = FakeRetailCrm(api_key=API_KEY), FakeCloudPbx(token=PBX_TOKEN), RecordingServer().start()
    accounts = tmp_path_factory.mktemp("accounts")
    try:
        files.route("/rec.mp3", Reply(200, b"ID3" + bytes(range(256)) * 8, {"Content-Type": "audio/mpeg"}))
        with ExitStack() as stack:  # every server and the runtime stopped, whatever happens
            crm_url = stack.enter_context(crm_server.serve(crm))
            pbx_url = stack.enter_context(crm_server.serve(pbx))
            text = ACCOUNT.format(crm=crm_url, api_key=API_KEY, client_id=CLIENT_ID, pbx=pbx_url, pbx_path=PBX_PATH,
                                  pbx_token=PBX_TOKEN, crm_token=CRM_TOKEN, files_port=files.port)  # fmt: skip
            (accounts / "rbusy.yaml").write_text(trusting_fakes_yaml(text), encoding="utf-8")
            # As the Bitrix24 replay: the missed call's quiet time outlasts DeliveryFunction's 2 s
            # batching window, so its cards go out before the call is settled.
            params = {"DeliveryRetryBaseSeconds": "0", "MissedCallSettleSeconds": "4", "ContactBudgetMs": "1000"}
            bridge = stack.enter_context(running_bridge(accounts, params=params))
            http = stack.enter_context(httpx.Client(base_url=bridge.base_url, timeout=120))
            yield World(bridge, http, crm, pbx, files)
            output = bridge.output()
    finally:
        files.stop()
    leaked = leaked_lines(output, {API_KEY, CLIENT_ID, PBX_TOKEN, CRM_TOKEN})
    assert not leaked, "secrets in the runtime's log lines:\n" + "\n".join(leaked)


def drain(world: World) -> None:
    # What is due now: an answered call's settle waits HistoryQuietSeconds, for a history the day sends.
    response = world.http.post("/_local/queues/drain", params={"timeout": "120", "delayed": "0"})
    assert response.status_code == 200, response.text


@dataclass
class Day:
    started: dict[int, float]  # call n -> when it started (epoch seconds)
    pbx_ids: dict[int, str]  # click call n -> the call id makeCall answered (none: the PBX named none)


@pytest.fixture
def day(world: World) -> Iterator[Day]:
    """The day, played at its pace; the runtime's queue drivers work meanwhile, as they would."""
    world.crm.fail_after_save["telephony/calls/upload"] = 2
    world.pbx.make_call_without_id_to.update(blind_numbers(CALLS))
    pbx_ids: dict[int, str] = {}

    def post(fields: dict[str, Any]) -> None:
        answer = world.http.post("/v1/rbusy/cloudpbx", content=form(**{**fields, "crm_token": CRM_TOKEN}), headers=FORM)
        assert answer.status_code == 200, answer.text

    def click(n: int) -> str | None:
        """A manager clicks the number in retailCRM: its request to our makeCallUrl."""
        user_id, code = MANAGERS[CLICKS[kind_of(n)]]
        query = {"clientId": CLIENT_ID, "code": code, "userId": str(user_id), "phone": "+" + phone_of(n)}
        answer = world.http.get("/v1/rbusy/retailcrm/make-call", params=query)
        assert answer.status_code == 200, answer.text
        pbx_id = answer.json().get("pbx_call_id")
        if not pbx_id:
            return None
        pbx_ids[n] = str(pbx_id)
        return pbx_ids[n]

    started = play_day(CALLS, EVERY_S, world.files.url("/rec.mp3"), post, click)
    yield Day(started, pbx_ids)


def test_a_busy_day_is_one_retailcrm_call_per_pbx_call_and_no_card_left_open(world: World, day: Day) -> None:
    crm = world.crm
    filed = [n for n in range(CALLS) if kind_of(n) != "withheld"]
    expected_ids = {day.pbx_ids.get(n) or callid_of(n): n for n in filed}
    deadline = time.monotonic() + 120
    while set(crm.calls) != set(expected_ids) and time.monotonic() < deadline:
        drain(world)
        assert world.http.post("/_local/schedules/DeliveryDrainFunction").status_code == 200
        time.sleep(1.0)
    drain(world)

    assert crm.errors == [] and world.pbx.errors == [], (crm.errors[:20], world.pbx.errors[:20])
    assert sorted(day.pbx_ids) == [n for n in filed if kind_of(n) == "click"]
    # One retailCRM call per PBX call: a click's under the PBX's call id, never under our placeholder.
    assert sorted(crm.calls) == sorted(expected_ids)
    for external_id, n in expected_ids.items():
        call, kind = crm.calls[external_id], kind_of(n)
        direction, manager, duration, result = EXPECTED[kind]
        user_id, code = MANAGERS[manager]
        got = (call["type"], call.get("userId"), call.get("code"), call["duration"], call["result"], call["phone"])
        assert got == (direction, user_id, code, duration, result, "+" + phone_of(n)), (n, kind, call)
        started = datetime.strptime(call["date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo(ZONE)).timestamp()
        assert abs(started - day.started[n]) <= 2.0, (n, kind, call["date"], day.started[n])
        assert (kind in ("missed", "redial")) is ("recordUrl" not in call), (n, kind, call)
    # Nothing twice: a call went again only in an upload whose answer was lost after it was saved.
    assert len(crm.lost_uploads) == 2
    lost = [external_id for upload in crm.lost_uploads for external_id in upload]
    assert crm.received == {external_id: 1 + lost.count(external_id) for external_id in expected_ids}

    # Cards: every card shown (`in` while a phone rings, `out` for a click) is closed by its
    # `hangup`, after it, under the same call; none is sent twice.
    shown: dict[tuple[str, str], list[str]] = {}
    for event in crm.events:
        for code in event["codes"]:
            shown.setdefault((event["callExternalId"], code), []).append(event["type"])
    assert shown, "no card was shown"
    clicked = {key for key, types in shown.items() if "out" in types}
    assert len(clicked) == len([n for n in filed if kind_of(n) in CLICKS]), sorted(clicked)  # all shown
    # (A card the queue held until its call was answered or ended is not shown late: its hangup alone.)
    wrong = {
        key: types
        for key, types in shown.items()
        if types[-1:] != ["hangup"] or len(types) > 1 + types.count("hangup") or types.count("hangup") != 1
    }
    assert wrong == {}, wrong
