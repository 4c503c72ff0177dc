"""A replayed day of Zadarma calls through the local runtime (a real `python -m callbridge_local`),
into retailCRM, MiniCRM and Bitrix24 at once (strict fakes on 127.0.0.1: tests/fakes/retailcrm.py,
minicrm.py, bitrix24.py), the PBX's API played by the strict fake Zadarma (tests/fakes/zadarma.py:
signed requests, paged statistics, record links that expire).

The day's calls started in the last hour (call n at DAY_START + n * SPACING_S, the PBX's local time
in the cabinet's zone); their signed notifications are replayed now, a call every EVERY_S, each on
its own thread: answered (its end sent twice), rung to a group, missed by everyone, busy, outgoing,
recorded but announced by NOTIFY_RECORD only, a known caller routed to the manager by the call-start
answer, and calls whose end notification is lost. On the way: a store fault that answers one end
notification 503 (the PBX sends it again, as it does every notification not answered 2xx), and each
CRM losing an answer after saving. Then the reconciliation reads the statistics and heals the lost
ends, and the deliveries drain.

It ends with exactly one record per call in each CRM, with the call's manager, direction, duration,
outcome and missed reason, UTC start, and the recording (fetched through a fresh record-request link:
the links expire within seconds here) where the call has one; and nothing twice but what a lost
answer made us send again."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import pytest

from callbridge.store.keys import CALL_SK, call_pk
from callbridge_local.testing import LocalBridge, running_bridge
from tests.fakes import base as api_server
from tests.fakes import crm_server
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.minicrm import FakeMiniCrm
from tests.fakes.retailcrm import FakeRetailCrm
from tests.fakes.zadarma import AUDIO, FakeZadarma, notification
from tests.log_secrets import leaked_lines
from tests.support import trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ACCOUNT_ID = "zday"
ZONE = "Europe/Berlin"  # the cabinet's: the PBX's times carry no zone
KEY, API_SECRET, HOOK = "zday-api-key-000000001", "zday-api-secret-0000001", "zday-hook-secret-0000001"
RETAIL_KEY, RETAIL_CLIENT = "zday-retailcrm-key-0001", "zday-retailcrm-client-01"
MINI_KEY = "zday-minicrm-key-000001"
B24_CODE, B24_APP_TOKEN = "zdaywebhookcode0001", "zday-b24-app-token-0001"
OUR_NUMBER = "4930999000"
FORM = {"content-type": "application/x-www-form-urlencoded"}

CALLS = 48
EVERY_S = 0.25  # replayed: a call every quarter second
STEP_S = 0.05  # between the notifications of one call
SPACING_S = 30  # when the calls really started: one every half minute
FAULT_CALL = 16  # its end notification meets the store fault
LINK_TTL_S = 5.0  # the PBX's record links expire that soon: only a link asked for at fetch time works
KINDS = ("answered", "group", "missed", "busy", "out", "record_only", "lost", "known")
RECORDED = {"answered", "group", "out", "record_only", "lost"}
# Each manager: (PBX extension, retailCRM userId and code, Bitrix24 USER_ID, MiniCRM UserExtension)
ANNA, BEN = "100", "101"
RETAIL_USER = {ANNA: 1, BEN: 2}
B24_USER = {ANNA: 1, BEN: 2}
# kind -> (direction, manager, duration, outcome, missed reason)
EXPECTED: dict[str, tuple[str, str, int, str, str | None]] = {
    "answered": ("in", ANNA, 30, "answered", None),
    "group": ("in", BEN, 40, "answered", None),
    "missed": ("in", ANNA, 0, "missed", "no_answer"),  # nobody took it: the first phone rung owns it
    "busy": ("in", BEN, 0, "missed", "busy"),
    "out": ("out", ANNA, 20, "answered", None),
    "record_only": ("in", ANNA, 25, "answered", None),
    "lost": ("in", BEN, 35, "answered", None),
    "known": ("in", BEN, 10, "answered", None),
}
# What each CRM files for an outcome (the connectors' tables: crm/retailcrm/connector.py RESULTS,
# crm/minicrm CallType, crm/bitrix24/connector.py STATUS_CODES). A missed incoming call is filed as
# missed whatever its reason: the reason is ours (the stored call's missed_reason, checked below).
RETAIL_RESULT = {"answered": "answered", "missed": "no answer"}
MINI_TYPE = {("in", "answered"): 1, ("out", "answered"): 0, ("in", "missed"): 2}
B24_STATUS = {"answered": "200", "missed": "304"}

ACCOUNT = """\
account: zday
timezone: Europe/Berlin
phone_region: DE
pbx:
  kind: zadarma
  api_url: {api}
  api_key: {key}
  api_secret: {secret}
  webhook_secret: {hook}
crms:
  - {{kind: retailcrm, base_url: "{retail}", api_key: {retail_key}, client_id: {retail_client}, mode: batch,
      call_events: false}}
  - {{kind: minicrm, base_url: "{mini}", api_key: {mini_key}, mode: batch}}
  - {{kind: bitrix24, webhook_url: "{portal}/rest/1/{b24_code}/", application_token: {b24_token}, mode: batch,
      call_cards: false}}
users:
  - {{pbx_user: "100", name: Anna, extension: "100", retailcrm_user_id: 1, retailcrm_code: "100", bitrix24_user_id: 1}}
  - {{pbx_user: "101", name: Ben, extension: "101", retailcrm_user_id: 2, retailcrm_code: "101", bitrix24_user_id: 2}}
contacts:
{contacts}
"""


def kind_of(n: int) -> str:
    return KINDS[n % len(KINDS)]


def call_id_of(n: int) -> str:
    return f"{'out' if kind_of(n) == 'out' else 'in'}_{1714550000 + n}.{n}"


def phone_of(n: int) -> str:
    """The client's number as Zadarma writes it (digits, no plus)."""
    return f"4930{2000000 + n:07d}"


def record_id_of(n: int) -> str:
    return f"{1714550000 + n}.{n}00"


@dataclass
class Day:
    start: datetime  # when call 0 started (UTC)
    started: dict[int, datetime] = field(default_factory=dict)  # call n -> its start (UTC, whole seconds)
    answers: dict[int, Any] = field(default_factory=dict)  # call n -> the NOTIFY_START answer
    refused: list[str] = field(default_factory=list)  # the events answered 503 (and sent again)

    def local(self, n: int) -> str:
        return self.started[n].astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")


def statistics_lines(day: Day) -> list[dict[str, Any]]:
    """What `/v1/statistics/pbx/` reports for the day: one line per call, as the PBX keeps it."""
    lines = []
    for n in range(CALLS):
        kind = kind_of(n)
        direction, manager, duration, _, reason = EXPECTED[kind]
        disposition = {None: "answered", "no_answer": "no answer", "busy": "busy"}[reason]
        outgoing = direction == "out"
        lines.append({
            "call_id": record_id_of(n), "callstart": day.local(n), "seconds": duration,
            "sip": manager if outgoing else "+" + phone_of(n), "clid": OUR_NUMBER if outgoing else "+" + phone_of(n),
            "destination": phone_of(n) if outgoing else (manager if reason != "no_answer" else OUR_NUMBER),
            "disposition": disposition, "is_recorded": kind in RECORDED, "pbx_call_id": call_id_of(n),
        })  # fmt: skip
    return lines


def script(n: int, day: Day) -> list[tuple[str, dict[str, str]]]:
    """The notifications of call n, in the order the PBX sends them (the lost ones left out)."""
    kind, call, start = kind_of(n), call_id_of(n), day.local(n)
    if kind == "out":
        out = {"pbx_call_id": call, "internal": ANNA, "destination": phone_of(n), "call_start": start}
        return [("NOTIFY_OUT_START", out),
                ("NOTIFY_OUT_END", {**out, "caller_id": OUR_NUMBER, "duration": "20", "disposition": "answered",
                                    "status_code": "16", "is_recorded": "1", "call_id_with_rec": record_id_of(n)}),
                ("NOTIFY_RECORD", {"pbx_call_id": call, "call_id_with_rec": record_id_of(n)})]  # fmt: skip
    base = {"pbx_call_id": call, "caller_id": "+" + phone_of(n), "called_did": OUR_NUMBER, "call_start": start}
    _, manager, duration, _, _ = EXPECTED[kind]

    def ring(ext: str) -> tuple[str, dict[str, str]]:
        return "NOTIFY_INTERNAL", {**base, "internal": ext}

    def answer(ext: str) -> tuple[str, dict[str, str]]:
        return "NOTIFY_ANSWER", {**base, "destination": OUR_NUMBER, "internal": ext}

    def end(disposition: str, recorded: bool, internal: str = manager) -> tuple[str, dict[str, str]]:
        return "NOTIFY_END", {**base, "internal": internal, "duration": str(duration), "disposition": disposition,
                              "status_code": "16", "is_recorded": "1" if recorded else "0",
                              "call_id_with_rec": record_id_of(n) if recorded else ""}  # fmt: skip

    record = ("NOTIFY_RECORD", {"pbx_call_id": call, "call_id_with_rec": record_id_of(n)})
    start_ = ("NOTIFY_START", base)
    if kind == "answered":  # the end arrives twice: a repeat changes nothing
        return [start_, ring(ANNA), answer(ANNA), end("answered", True), end("answered", True), record]
    if kind == "group":
        return [start_, ring(ANNA), ring(BEN), answer(BEN), end("answered", True), record]
    if kind == "missed":
        return [start_, ring(ANNA), ring(BEN), end("no answer", False, internal="")]
    if kind == "busy":
        return [start_, ring(BEN), end("busy", False)]
    if kind == "record_only":  # the end says nothing of a recording: NOTIFY_RECORD announces it
        return [start_, ring(ANNA), answer(ANNA), end("answered", False), record]
    if kind == "lost":  # its end and its NOTIFY_RECORD never arrive: the statistics heal it
        return [start_, ring(BEN), answer(BEN)]
    return [start_, ring(BEN), answer(BEN), end("answered", False)]  # known: routed to Ben


@dataclass
class World:
    bridge: LocalBridge
    http: httpx.Client
    pbx: FakeZadarma
    retail: FakeRetailCrm
    mini: FakeMiniCrm
    portal: FakeBitrix24


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pbx = FakeZadarma(key=KEY, secret=API_SECRET, link_ttl_s=LINK_TTL_S)
    pbx.recordings.update({record_id_of(n): AUDIO for n in range(CALLS) if kind_of(n) in RECORDED})
    retail, mini = FakeRetailCrm(api_key=RETAIL_KEY), FakeMiniCrm(MINI_KEY)
    portal = FakeBitrix24(code=B24_CODE, users={1: ANNA, 2: BEN}, fetch_records=True)
    accounts = tmp_path_factory.mktemp("accounts")
    with ExitStack() as stack:  # every server and the runtime stopped, whatever happens
        api_url = stack.enter_context(api_server.serve(pbx))
        pbx.base_url = api_url
        retail_url = stack.enter_context(crm_server.serve(retail))
        mini_url = stack.enter_context(crm_server.serve(mini))
        portal_url = stack.enter_context(crm_server.serve(portal))
        contacts = "\n".join(
            f'  - {{name: "Kunde {n}", phones: ["+{phone_of(n)}"], responsible: "{BEN}"}}'
            for n in range(CALLS)
            if kind_of(n) == "known"
        )
        text = ACCOUNT.format(api=api_url, key=KEY, secret=API_SECRET, hook=HOOK, retail=retail_url,
                              retail_key=RETAIL_KEY, retail_client=RETAIL_CLIENT, mini=mini_url, mini_key=MINI_KEY,
                              portal=portal_url, b24_code=B24_CODE, b24_token=B24_APP_TOKEN,
                              contacts=contacts)  # fmt: skip
        (accounts / f"{ACCOUNT_ID}.yaml").write_text(trusting_fakes_yaml(text), encoding="utf-8")
        # Deliveries retried at once; a recording fetch that met the store fault tried again at once.
        params = {"DeliveryRetryBaseSeconds": "0", "RecordingRetryBaseSeconds": "0", "ContactBudgetMs": "1000"}
        bridge = stack.enter_context(running_bridge(accounts, params=params))
        http = stack.enter_context(httpx.Client(base_url=bridge.base_url, timeout=60))
        yield World(bridge, http, pbx, retail, mini, portal)
        output = bridge.output()
    leaked = leaked_lines(output, {KEY, API_SECRET, HOOK, RETAIL_KEY, RETAIL_CLIENT, MINI_KEY, B24_CODE, B24_APP_TOKEN})
    assert not leaked, "secrets in the runtime's log lines:\n" + "\n".join(leaked)


def set_store_fault(world: World, error: str | None) -> None:
    answer = world.http.post("/_local/faults/dynamodb", params={"error": error or ""})
    assert answer.status_code == 200 and answer.json()["dynamodbWrites"] == error, answer.text


def notify(world: World, event: str, fields: dict[str, str], day: Day) -> Any:
    """One signed notification, sent again while it is answered 503, as the PBX does."""
    body, signature = notification(API_SECRET, event, **fields)
    for _ in range(20):
        answer = world.http.post(f"/v1/{ACCOUNT_ID}/zadarma/{HOOK}", content=urlencode(body),
                                 headers={**FORM, "Signature": signature})  # fmt: skip
        if answer.status_code != 503:
            assert answer.status_code == 200, (event, fields, answer.status_code, answer.text)
            return answer.json() if answer.text else None
        day.refused.append(event)
        time.sleep(0.2)
    raise AssertionError(f"{event} of {fields['pbx_call_id']} still refused")


def play(world: World, day: Day, n: int, due: float) -> None:
    time.sleep(max(0.0, due - time.monotonic()))
    for event, fields in script(n, day):
        if n == FAULT_CALL and event == "NOTIFY_END" and "NOTIFY_END" not in day.refused:
            # The store fails as the end arrives: answered 503, never 2xx, and sent again.
            set_store_fault(world, "InternalServerError")
            body, signature = notification(API_SECRET, event, **fields)
            answer = world.http.post(f"/v1/{ACCOUNT_ID}/zadarma/{HOOK}", content=urlencode(body),
                                     headers={**FORM, "Signature": signature})  # fmt: skip
            set_store_fault(world, None)
            assert answer.status_code == 503, answer.text
            day.refused.append(event)
        answer = notify(world, event, fields, day)
        if event == "NOTIFY_START":
            day.answers[n] = answer
        time.sleep(STEP_S)


def until(world: World, done: Callable[[], bool], seconds: float, runs: list[str]) -> None:
    """Drive the queues and the scheduled functions `runs` until `done` or the time is up."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        answer = world.http.post("/_local/queues/drain", params={"timeout": "20", "delayed": "0"})
        # 504: something still waits, e.g. a recording fetch sitting out the PBX's Retry-After (the
        # fake's rate limit answers 429 with 20 s): the loop goes on until `done` or its time is up.
        assert answer.status_code in (200, 504), answer.text
        for function in runs:
            answer = world.http.post(f"/_local/schedules/{function}")
            assert answer.status_code == 200, answer.text
        time.sleep(0.3)


@pytest.fixture
def day(world: World) -> Day:
    now = datetime.now(UTC).replace(microsecond=0)
    day = Day(start=now - timedelta(minutes=50))
    day.started = {n: day.start + timedelta(seconds=n * SPACING_S) for n in range(CALLS)}
    world.pbx.stats = statistics_lines(day)
    world.retail.fail_after_save["telephony/calls/upload"] = 1
    world.mini.fail_after_save["calllog"] = 1
    world.portal.lose_answers.update({"telephony.externalcall.finish": 1, "telephony.externalCall.attachRecord": 1})
    begin = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        for result in [pool.submit(play, world, day, n, begin + n * EVERY_S) for n in range(CALLS)]:
            result.result()
    return day


def test_a_replayed_zadarma_day_is_one_record_per_call_in_every_crm(world: World, day: Day) -> None:
    retail, mini, portal, pbx = world.retail, world.mini, world.portal, world.pbx
    ids = {call_id_of(n): n for n in range(CALLS)}

    # The store fault: the one end refused, sent again, stored once.
    assert "NOTIFY_END" in day.refused
    # The call-start answer: a known caller named and routed to the responsible manager's extension.
    for n, answer in day.answers.items():
        routed = {"caller_name": f"Kunde {n}", "redirect": BEN, "return_timeout": 20} if kind_of(n) == "known" else {}
        assert answer == routed, (n, answer)

    # The lost ends: healed by the reconciliation from the statistics (one request: one page).
    before = pbx.count("/v1/statistics/pbx/")
    answer = world.http.post("/_local/schedules/ZadarmaReconcileFunction")
    assert answer.status_code == 200, answer.text
    assert pbx.count("/v1/statistics/pbx/") == before + 1

    def everywhere() -> bool:
        return (
            set(retail.calls) == set(ids)
            and sum(len(r) for r in mini.records.values()) == CALLS
            and len(portal.finished) == CALLS
            and len(portal.records) == sum(1 for n in range(CALLS) if kind_of(n) in RECORDED)
        )

    until(world, everywhere, 90.0, ["DeliveryDrainFunction"])  # past a 429's Retry-After
    assert retail.errors == [] and mini.errors == [] and portal.errors == [] and pbx.errors == [], (
        retail.errors[:5], mini.errors[:5], portal.errors[:5], pbx.errors[:5],
    )  # fmt: skip

    # retailCRM: one call per call, its manager, direction, duration, result, start and recording.
    assert sorted(retail.calls) == sorted(ids)
    for call_id, n in ids.items():
        call, kind = retail.calls[call_id], kind_of(n)
        direction, manager, duration, outcome, reason = EXPECTED[kind]
        got = (call["type"], call.get("userId"), call.get("code"), call["duration"], call["result"], call["phone"])
        wanted = (direction, RETAIL_USER[manager], manager, duration, RETAIL_RESULT[outcome], "+" + phone_of(n))
        assert got == wanted, (n, kind, call)
        at = datetime.strptime(call["date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo(ZONE))
        assert at == day.started[n], (n, call["date"])
        assert ("recordUrl" in call) is (kind in RECORDED), (n, kind, call)
    assert len(retail.lost_uploads) == 1
    resent = [i for upload in retail.lost_uploads for i in upload]
    assert retail.received == {i: 1 + resent.count(i) for i in ids}

    # MiniCRM: one record per call under its manager's extension; ReferenceId (our recording) when recorded.
    records = {r["Date"] + r["Number"]: (ext, r) for ext, r in mini.all_records()}
    assert len(records) == CALLS == len(mini.all_records())
    for n in range(CALLS):
        kind = kind_of(n)
        direction, manager, duration, outcome, _ = EXPECTED[kind]
        # Date in UTC; Number national, as MiniCRM's users type it (minicrm number_format's default).
        ext, record = records[day.started[n].strftime("%Y-%m-%d %H:%M:%S") + "0" + phone_of(n)[2:]]
        assert (ext, record["Duration"], record["CallType"]) == (manager, duration, MINI_TYPE[direction, outcome]), (
            n, kind, ext, record,
        )  # fmt: skip
        assert (record.get("ReferenceId") == call_id_of(n)) is (kind in RECORDED), (n, kind, record)
    assert len(mini.lost_logs) == 1
    assert mini.received == CALLS + len(mini.lost_logs[0])  # only the lost answer's records went again

    # Bitrix24: one registered and finished call per call, its user, status and recording (the
    # portal downloaded it from our recordings URL: the bytes the PBX recorded).
    by_external = {c["EXTERNAL_CALL_ID"]: call_id for call_id, c in portal.calls.items()}
    assert sorted(by_external) == sorted(ids) and sorted(portal.finished) == sorted(portal.calls)
    for call_id, n in ids.items():
        kind, b24_call = kind_of(n), by_external[call_id]
        direction, manager, duration, outcome, _ = EXPECTED[kind]
        filed = portal.finished[b24_call]
        assert (filed["TYPE"], filed["USER_ID"], filed["DURATION"], filed["STATUS_CODE"]) == (
            1 if direction == "out" else 2, B24_USER[manager], duration, B24_STATUS[outcome],
        ), (n, kind, filed)  # fmt: skip
        assert datetime.fromisoformat(filed["CALL_START_DATE"]) == day.started[n], (n, filed)
        assert (b24_call in portal.records) is (kind in RECORDED), (n, kind)
        assert kind not in RECORDED or portal.records[b24_call] == AUDIO
    assert all(count == 1 for count in portal.attached.values())  # each recording attached once
    assert not any(portal.lose_answers.values())  # every lost answer happened

    # Our own record of each call: its outcome and missed reason, stored once.
    dynamodb, table = world.bridge.client("dynamodb"), world.bridge.env["CALLS_TABLE"]
    for call_id, n in ids.items():
        _, manager, _, outcome, reason = EXPECTED[kind_of(n)]
        stored = dynamodb.get_item(
            TableName=table, Key={"pk": {"S": call_pk(ACCOUNT_ID, call_id)}, "sk": {"S": CALL_SK}}
        )
        kept = {k: v.get("S") for k, v in stored["Item"].items() if k in ("outcome", "missed_reason", "user")}
        # A call nobody took has no user of its own: the CRMs file it under its owner (the first rung).
        user = {} if kind_of(n) == "missed" else {"user": manager}
        assert kept == {"outcome": outcome, **user, **({"missed_reason": reason} if reason else {})}, (n, kept)
        assert "/download/" not in json.dumps(stored["Item"])  # no expiring link is ever kept

    # Recordings: each asked for through a fresh record-request link, by the recording's id.
    requested = [params.get("call_id") for path, params in pbx.requests if path == "/v1/pbx/record/request/"]
    asked = Counter(requested)
    assert set(asked) == {record_id_of(n) for n in range(CALLS) if kind_of(n) in RECORDED}
    # A repeated end re-queues a fetch still under way (core/record.py store_final: the first
    # hand-off may have failed). A fetch tried again asks for a fresh link: after its link expired
    # before the download (LINK_TTL_S, on a loaded machine), after a failure it logged (the store
    # fault, when a fetch meets it), or after it gave up and a repeated NOTIFY_RECORD announced the
    # recording again. Nothing else gets a second link, NOTIFY_RECORD included (a request the rate
    # limit refused gave none).
    asked = Counter(pbx.links_issued)
    retried = Counter(pbx.expired_downloads)
    failures = ("recording fetch failed, will retry", "recording fetch gave up", "recording unavailable")
    for line in world.bridge.output().splitlines():
        if any(failure in line for failure in failures):
            retried.update(record_id_of(n) for n in range(CALLS) if f'"{call_id_of(n)}"' in line)
    twice = {n for n in range(CALLS) if asked[record_id_of(n)] > 1 + retried[record_id_of(n)]}
    assert all(kind_of(n) == "answered" and asked[record_id_of(n)] == 2 + retried[record_id_of(n)] for n in twice), (
        asked,
        retried,
    )
