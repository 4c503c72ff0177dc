"""A busy day into amoCRM, through the local runtime (a real `python -m callbridge_local`): 64 Cloud
PBX calls started two a second over HTTP (tests/e2e/busy_day.py) - answered, group-rung, missed, a
missed caller who redials at once, outgoing, withheld, and clicks in amoCRM's widget (its request to
`POST /v1/{account}/calls`) whose `makeCall` the PBX answers with its call id or with an empty 200 -
with recordings, into the strict fake account (tests/fakes/kommo.py: 7 requests a second, a resent
call stored twice, matching by the last 10 digits) which loses answers after saving calls, incoming
leads and notes. Half the callers are contacts amoCRM has; the others are unknown.

It ends with exactly one amoCRM call per PBX call (a withheld caller has none: amoCRM files calls by
number), each with its start (±2 s), direction, user, duration, status and recording link; one
incoming lead per unknown caller (the redial onto the missed call's lead); an outgoing call's unknown
number made a contact once; nothing twice; no secret in the runtime's log lines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from callbridge_local.testing import LocalBridge, running_bridge
from tests.e2e.busy_day import CLICKS, blind_numbers, callid_of, kind_of, phone_of, play_day
from tests.fakes import crm_server
from tests.fakes.cloudpbx_api import PATH as PBX_PATH
from tests.fakes.cloudpbx_api import FakeCloudPbx
from tests.fakes.kommo import FakeKommo
from tests.integration.recording_server import RecordingServer, Reply
from tests.log_secrets import leaked_lines
from tests.support import form, trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

CALLS = 64
EVERY_S = 0.5
TOKEN = "kommo-e2e-long-lived-token-0001"
API_KEY = "kommo-e2e-api-key-000000001"
PBX_TOKEN = "kommo-e2e-pbx-api-token-01"
CRM_TOKEN = "kommo-e2e-crm-token-0001"
FORM = {"content-type": "application/x-www-form-urlencoded"}
AUDIO = b"ID3" + bytes(range(256)) * 8
ANDY, DARIA = 1, 2  # their user ids in amoCRM
EXTENSIONS = {"andy": "101", "daria": "102"}

ACCOUNT = """\
account: kommo
timezone: Europe/Moscow
phone_region: RU
api_keys: [{api_key}]
pbx:
  kind: cloudpbx
  api_url: {pbx}{pbx_path}
  token: {pbx_token}
  crm_tokens: [{crm_token}]
crms:
  - kind: kommo
    base_url: {amo}
    token: {token}
users:
  - {{pbx_user: andy, name: Andrey, extension: "101", kommo_user_id: 1}}
  - {{pbx_user: daria, name: Daria, extension: "102", kommo_user_id: 2}}
recordings:
  allow_hosts: ["127.0.0.1:{files_port}"]   # the test's file server (that port only): never on AWS
"""

EXPECTED = {  # kind -> (direction, user id, duration, call_status, recorded)
    "answered": ("inbound", ANDY, 30, 4, True),
    "group": ("inbound", DARIA, 40, 4, True),
    "missed": ("inbound", DARIA, 0, 6, False),
    "redial": ("inbound", ANDY, 0, 6, False),
    "out": ("outbound", ANDY, 20, 4, True),
    "click": ("outbound", ANDY, 25, 4, True),
    "blind_click": ("outbound", DARIA, 25, 4, True),
}


@dataclass
class World:
    bridge: LocalBridge
    http: httpx.Client
    amo: FakeKommo
    pbx: FakeCloudPbx
    files: RecordingServer


def known(n: int) -> bool:
    """Whether amoCRM has a contact for call n's caller: every other call's (a redial's is its
    missed call's, which is unknown: the missed kind falls on even numbers)."""
    return n % 2 == 1 and kind_of(n) != "redial"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    amo = FakeKommo(token=TOKEN, users={ANDY: "Andrey", DARIA: "Daria"})
    for n in range(CALLS):
        if known(n) and phone_of(n):
            # As a person typed it: national with the trunk prefix (amoCRM matches the last 10 digits).
            amo.add_contact("8" + phone_of(n)[1:], f"Client {n}", responsible=ANDY, leads=n % 3 == 1)
    pbx = FakeCloudPbx(token=PBX_TOKEN)
    files = RecordingServer().start()
    accounts = tmp_path_factory.mktemp("accounts")
    try:
        files.route("/rec.mp3", Reply(200, AUDIO, {"Content-Type": "audio/mpeg"}))
        with ExitStack() as stack:  # every server and the runtime stopped, whatever happens
            amo_url = stack.enter_context(crm_server.serve(amo))
            pbx_url = stack.enter_context(crm_server.serve(pbx))
            text = ACCOUNT.format(amo=amo_url, token=TOKEN, api_key=API_KEY, pbx=pbx_url, pbx_path=PBX_PATH,
                                  pbx_token=PBX_TOKEN, crm_token=CRM_TOKEN, files_port=files.port)  # fmt: skip
            (accounts / "kommo.yaml").write_text(trusting_fakes_yaml(text), encoding="utf-8")
            params = {"DeliveryRetryBaseSeconds": "0", "MissedCallSettleSeconds": "4", "ContactBudgetMs": "1000"}
            bridge = stack.enter_context(running_bridge(accounts, params=params))
            http = stack.enter_context(httpx.Client(base_url=bridge.base_url, timeout=120))
            yield World(bridge, http, amo, pbx, files)
            output = bridge.output()
    finally:
        files.stop()
    leaked = leaked_lines(output, {TOKEN, API_KEY, PBX_TOKEN, CRM_TOKEN})
    assert not leaked, "secrets in the runtime's log lines:\n" + "\n".join(leaked)


def pbx_post(world: World, fields: dict[str, Any]) -> None:
    response = world.http.post("/v1/kommo/cloudpbx", content=form(**{**fields, "crm_token": CRM_TOKEN}), headers=FORM)
    assert response.status_code == 200, response.text


def drain(world: World) -> None:
    response = world.http.post("/_local/queues/drain", params={"timeout": "120", "delayed": "0"})
    assert response.status_code == 200, response.text


@dataclass
class Day:
    started: dict[int, float]
    pbx_ids: dict[int, str]  # click call n -> the call id makeCall answered (none: the PBX named none)


@pytest.fixture
def day(world: World) -> Iterator[Day]:
    """The day, played at its pace, amoCRM losing answers after saving meanwhile."""
    world.amo.fail_after_save.update({"/api/v4/calls": 3, "/api/v4/leads/unsorted/sip": 2, "/api/v4/leads/notes": 1,
                                      "/api/v4/contacts": 1})  # fmt: skip
    world.pbx.make_call_without_id_to.update(blind_numbers(CALLS))
    pbx_ids: dict[int, str] = {}

    def click(n: int) -> str | None:
        """A manager clicks the number in amoCRM: the widget posts what it posts (its request is
        tested against the route in tests/integration/test_kommo_widget.py)."""
        body = {"extension": EXTENSIONS[CLICKS[kind_of(n)]], "phone": "+" + phone_of(n)}
        answer = world.http.post("/v1/kommo/calls", json=body, headers={"authorization": f"Bearer {API_KEY}"})
        assert answer.status_code == 200, answer.text
        pbx_id = answer.json().get("pbx_call_id")
        if not pbx_id:
            return None
        pbx_ids[n] = str(pbx_id)
        return pbx_ids[n]

    started = play_day(CALLS, EVERY_S, world.files.url("/rec.mp3"), lambda fields: pbx_post(world, fields), click)
    yield Day(started, pbx_ids)


def test_a_busy_day_is_one_amocrm_call_per_pbx_call(world: World, day: Day) -> None:
    amo = world.amo
    filed_kinds = [n for n in range(CALLS) if kind_of(n) != "withheld"]
    deadline = time.monotonic() + 240
    while len({c["uniq"] for c in amo.filed()}) < len(filed_kinds) and time.monotonic() < deadline:
        drain(world)
        assert world.http.post("/_local/schedules/DeliveryDrainFunction").status_code == 200
        time.sleep(1.0)
    drain(world)

    assert amo.errors == [], amo.errors[:20]
    assert all(left == 0 for left in amo.fail_after_save.values()), amo.fail_after_save  # every fault happened
    assert amo.throttled == 0  # one bucket per account in the runtime's process kept it under 7 a second
    filed = amo.filed()
    uniqs = [str(c["uniq"]) for c in filed]
    assert len(uniqs) == len(set(uniqs)), "a call was stored twice"
    ids = {n: day.pbx_ids.get(n, callid_of(n)) for n in filed_kinds}
    assert sorted(uniqs) == sorted(ids.values())  # one per PBX call (a click's: the call id makeCall gave)
    by_uniq = {str(c["uniq"]): c for c in filed}
    for n in filed_kinds:
        kind, call = kind_of(n), by_uniq[ids[n]]
        direction, user, duration, status, recorded = EXPECTED[kind]
        assert (call["direction"], call["responsible_user_id"], call["duration"]) == (direction, user, duration), (
            n,
            call,
        )
        assert call["created_by"] == user and call["phone"] == "+" + phone_of(n)
        if call["via"] != "unsorted":  # an incoming lead's metadata has no status (docs/protocols/kommo.md)
            assert call["call_status"] == status, (n, kind, call)
        assert abs(call["created_at"] - day.started[n]) <= 2.0, (n, kind, call["created_at"], day.started[n])
        assert bool(call.get("link")) is recorded, (n, kind, call)
        if recorded:
            assert f"/v1/kommo/recordings/{ids[n]}?" in call["link"], call["link"]
        # Where it went: a known caller's card; an unknown caller's incoming lead; an unknown
        # number called out: the contact made for it.
        if known(n):
            assert call["via"] == "note", (n, call)
        elif direction == "outbound":
            assert call["via"] == "note" and call["entity"].startswith("contacts:"), (n, call)
        else:
            assert call["via"] in ("unsorted", "note") and call["entity"].startswith("leads:"), (n, call)
    # One incoming lead per unknown caller: the missed caller's redial went onto his lead.
    unknown_callers = {phone_of(n) for n in filed_kinds if not known(n) and EXPECTED[kind_of(n)][0] == "inbound"}
    assert len(amo.unsorted) == len(unknown_callers)
    assert len({str(u["metadata"]["phone"]) for u in amo.unsorted}) == len(amo.unsorted)
    for n in filed_kinds:
        if kind_of(n) == "redial" and not known(n):
            assert by_uniq[ids[n]]["entity"] == by_uniq[ids[n - 1]]["entity"], n
    # An unknown number called out became one contact (the lookup before making one, after a lost answer).
    made = [c for c in amo.contacts.values() if c["visible"] and str(c["name"]).startswith("+")]
    assert len(made) == len(
        {phone_of(n) for n in filed_kinds if not known(n) and EXPECTED[kind_of(n)][0] == "outbound"}
    )
    # The recording links play: the bytes the PBX recorded, through our signed playback.
    link = next(c["link"] for c in filed if c.get("link"))
    played = world.http.get(httpx.URL(link).raw_path.decode(), follow_redirects=True)
    assert played.status_code == 200 and played.content == AUDIO
