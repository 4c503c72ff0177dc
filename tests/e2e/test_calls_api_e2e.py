"""The call history API (GET /v1/{account}/calls, /calls/{callid}) through the local runtime over
HTTP: 10,000 calls paged by cursor with none missing or repeated, the filters, the refusals (wrong
key 401, another account's call 404, a tampered or foreign cursor 400, bad filters 400), and one
call's timeline, delivery to a fake MiniCRM and recording, whose playback link plays the bytes.
The CLI's `calls list|show` answer what the API answers (one query behind both)."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from callbridge.core.accounts import clear_account_cache
from callbridge.infra import aws, secrets
from callbridge.infra.settings import reset_settings
from callbridge_cli.main import cli
from callbridge_local.testing import LocalBridge, running_bridge
from tests.fakes.crm_server import serve
from tests.fakes.minicrm import FakeMiniCrm
from tests.integration.recording_server import RecordingServer, Reply
from tests.support import form, seed_event, seed_history, trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BULK_KEY = "bulk-api-key-0000000001"
HIST_KEY = "hist-api-key-0000000001"
TOKEN = "hist-crm-token-00000001"
MINI_KEY = "hist-minicrm-key-01"
COUNT = 10_000
USERS = ["andy", "daria", "boris"]
OUTCOMES = ["answered", "missed", "busy", "no_answer"]
PHONES = [f"+7910{n:07d}" for n in range(50)]
START = datetime(2026, 10, 1, tzinfo=UTC)
AUDIO = b"ID3" + random.Random(3).randbytes(50_000)

ACCOUNTS = {
    "bulk": f"""\
account: bulk
phone_region: RU
pbx: {{kind: cloudpbx, crm_tokens: [bulk-crm-token-00000001]}}
api_keys: [{BULK_KEY}]
""",
    "hist": """\
account: hist
phone_region: RU
pbx: {{kind: cloudpbx, crm_tokens: [{token}]}}
api_keys: [{key}]
users:
  - {{pbx_user: andy, extension: "101"}}
crms:
  - {{kind: minicrm, base_url: "{mini}", api_key: {mini_key}, mode: realtime, default_user_extension: "900"}}
recordings:
  allow_hosts: ["127.0.0.1:{files}"]   # the test's file server (that port only): never on AWS
""",
}


@dataclass
class World:
    bridge: LocalBridge
    http: httpx.Client
    mini: FakeMiniCrm
    files: RecordingServer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    accounts: Path = tmp_path_factory.mktemp("accounts")
    mini = FakeMiniCrm(MINI_KEY)
    with ExitStack() as stack:
        files = RecordingServer().start()
        stack.callback(files.stop)
        mini_url = stack.enter_context(serve(mini))
        (accounts / "bulk.yaml").write_text(ACCOUNTS["bulk"], encoding="utf-8")
        text = ACCOUNTS["hist"].format(token=TOKEN, key=HIST_KEY, mini=mini_url, mini_key=MINI_KEY, files=files.port)
        (accounts / "hist.yaml").write_text(trusting_fakes_yaml(text), encoding="utf-8")
        bridge = stack.enter_context(running_bridge(accounts, params={"RecordingRetryBaseSeconds": "0"}))
        http = stack.enter_context(httpx.Client(base_url=bridge.base_url, timeout=30))
        yield World(bridge, http, mini, files)


@contextmanager
def core_at(bridge: LocalBridge) -> Iterator[None]:
    """The core's settings and clients pointed at the runtime's emulated AWS, then restored."""
    saved = dict(os.environ)
    os.environ.update(bridge.env)
    forget()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        forget()


def forget() -> None:
    reset_settings()
    aws.reset_clients()
    secrets.reset_secret_cache()
    clear_account_cache()


def expected_calls() -> list[dict[str, str]]:
    """The bulk account's calls: two calls share each start second (ties are ordered by call id)."""
    return [
        {
            "call_id": f"BULK-{n:05d}",
            "started_at": (START + timedelta(seconds=60 * (n // 2))).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "direction": "in" if n % 3 else "out",
            "outcome": OUTCOMES[n % len(OUTCOMES)],
            "user": USERS[n % len(USERS)],
            "phone": PHONES[n % len(PHONES)],
        }
        for n in range(COUNT)
    ]


@pytest.fixture(scope="module")
def bulk(world: World) -> list[dict[str, str]]:
    """10,000 final calls written with the store's batch writes into the runtime's table, as the
    canonical model (core.record.FinalCall) shapes them."""
    from callbridge.core.record import FinalCall
    from callbridge.core.terms import Direction, Marker, Outcome, StartSource
    from callbridge.store import calls

    wanted = expected_calls()
    with core_at(world.bridge):
        items = [
            calls.call_item(
                "bulk",
                c["call_id"],
                FinalCall(
                    call_id=c["call_id"],
                    source="cloudpbx",
                    marker=Marker("history", c["direction"], c["user"]),
                    direction=Direction(c["direction"]),
                    outcome=Outcome(c["outcome"]),
                    phone=c["phone"],
                    phone_raw=c["phone"].lstrip("+"),
                    started_at=c["started_at"],
                    start_source=StartSource.PBX,
                    duration=7,
                    user=c["user"],
                    raw={"callid": c["call_id"]},
                ).attributes("bulk", "2026-11-01T00:00:00Z"),
            )
            for c in wanted
        ]
        chunks = [items[i : i + 500] for i in range(0, len(items), 500)]
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(calls.batch_put, chunks))
    return wanted


def get(world: World, path: str, key: str | None = BULK_KEY, **params: Any) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return world.http.get(path, params={k: v for k, v in params.items() if v is not None}, headers=headers)


def page_through(world: World, account: str, key: str, **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every call the API lists, following next_cursor; (calls, pages)."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        response = get(world, f"/v1/{account}/calls", key, cursor=cursor, **params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["calls"]) <= int(params.get("limit", 50))
        found.extend(body["calls"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return found, pages
        assert pages < COUNT, "the cursor does not advance"


def newest_first(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(calls, key=lambda c: (c["started_at"], c["call_id"]), reverse=True)


def test_ten_thousand_calls_page_by_cursor_none_missing_or_repeated(world, bulk):
    found, pages = page_through(world, "bulk", BULK_KEY, limit=500)
    ids = [c["call_id"] for c in found]
    assert len(ids) == len(set(ids)) == COUNT
    assert set(ids) == {c["call_id"] for c in bulk}
    assert ids == [c["call_id"] for c in newest_first(bulk)]
    assert pages == COUNT // 500  # full pages, and no empty one at the end
    first = found[0]
    # The stored call as the model stored it, minus the storage's keys; phones E.164, times UTC Z.
    assert first["phone"].startswith("+") and first["started_at"].endswith("Z")
    assert not {"pk", "sk", "gsi1pk", "gsi1sk", "history_raw"} & set(first)


def test_filters_page_to_exactly_the_matching_calls(world, bulk):
    # Windows keep what the emulated DynamoDB reads small; the last day of calls starts 10-04.
    since = "2026-10-04T00:00:00Z"
    late = [c for c in bulk if c["started_at"] >= since]
    wanted = [c for c in late if c["direction"] == "in" and c["outcome"] == "missed" and c["user"] == "daria"]
    found, _ = page_through(
        world, "bulk", BULK_KEY, **{"from": since, "direction": "in", "outcome": "missed", "user": "daria"}
    )
    assert [c["call_id"] for c in found] == [c["call_id"] for c in newest_first(wanted)]
    assert wanted
    # Short pages, cut inside what one query read, resume right after their last call.
    wanted = [c for c in late if c["user"] == "boris"]
    found, _ = page_through(world, "bulk", BULK_KEY, **{"from": since, "user": "boris", "limit": 100})
    assert [c["call_id"] for c in found] == [c["call_id"] for c in newest_first(wanted)]

    # Any format of the number, matched in E.164 (the account's region reads the trunk prefix).
    phone = PHONES[7]
    national = "8 (910) " + phone[5:8] + "-" + phone[8:10] + "-" + phone[10:]
    found, _ = page_through(world, "bulk", BULK_KEY, **{"from": since, "phone": national, "limit": 500})
    assert {c["call_id"] for c in found} == {c["call_id"] for c in late if c["phone"] == phone}

    # [from, to): a call that started exactly at `to` is not in, one exactly at `from` is; any zone.
    since, before = "2026-10-02T00:00:00Z", "2026-10-02T06:00:00+03:00"  # 03:00Z
    window = [c for c in bulk if since <= c["started_at"] < "2026-10-02T03:00:00Z"]
    found, _ = page_through(world, "bulk", BULK_KEY, **{"from": since, "to": before, "limit": 100})
    assert [c["call_id"] for c in found] == [c["call_id"] for c in newest_first(window)]
    assert found[-1]["started_at"] == since
    assert not any(c["started_at"] == "2026-10-02T03:00:00Z" for c in found)
    assert any(c["started_at"] == "2026-10-02T03:00:00Z" for c in bulk)

    # A date alone is its midnight UTC.
    day = [c for c in bulk if "2026-10-03T00:00:00Z" <= c["started_at"] < "2026-10-03T04:00:00Z"]
    found, _ = page_through(
        world, "bulk", BULK_KEY, **{"from": "2026-10-03", "to": "2026-10-03T04:00:00Z", "limit": 500}
    )
    assert {c["call_id"] for c in found} == {c["call_id"] for c in day}


def test_a_wrong_key_an_unknown_account_and_no_key_get_one_401(world, bulk):
    answers = [
        get(world, "/v1/bulk/calls", "bulk-api-key-0000000002"),
        get(world, "/v1/bulk/calls", None),
        get(world, "/v1/bulk/calls", HIST_KEY),  # another account's key
        get(world, "/v1/nosuchaccount/calls", BULK_KEY),
        get(world, "/v1/bulk/calls/BULK-00001", "bulk-api-key-0000000002"),
        world.http.get("/v1/bulk/calls", headers={"authorization": f"Basic {BULK_KEY}"}),
    ]
    for response in answers:
        assert response.status_code == 401, response.text
        assert response.json() == {"error": "Invalid credentials"}
        assert response.headers["www-authenticate"] == "Bearer"


def test_another_accounts_call_is_not_found(world, bulk):
    mine = get(world, "/v1/bulk/calls/BULK-00001")
    assert mine.status_code == 200 and mine.json()["call"]["call_id"] == "BULK-00001"
    theirs = get(world, "/v1/hist/calls/BULK-00001", HIST_KEY)
    unknown = get(world, "/v1/hist/calls/NO-SUCH-CALL", HIST_KEY)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json() == unknown.json() == {"error": "Call not found"}


def first_cursor(world: World, **params: Any) -> str:
    response = get(world, "/v1/bulk/calls", limit=3, **params)
    assert response.status_code == 200, response.text
    cursor: str = response.json()["next_cursor"]
    return cursor


def test_a_tampered_foreign_or_reused_cursor_is_refused_with_400(world, bulk):
    cursor = first_cursor(world)
    assert get(world, "/v1/bulk/calls", limit=3, cursor=cursor).status_code == 200
    payload, mac = cursor.split(".")
    # Another position, signed with the old MAC: the key of a call of another account.
    import base64

    forged = base64.urlsafe_b64encode(json.dumps(["CALL#hist#X", "2030-01-01T00:00:00Z#X"]).encode()).decode()
    flipped = payload[:-1] + ("A" if payload[-1] != "A" else "B")
    refused = [
        get(world, "/v1/bulk/calls", cursor=f"{forged.rstrip('=')}.{mac}"),
        get(world, "/v1/bulk/calls", cursor=f"{flipped}.{mac}"),
        get(world, "/v1/bulk/calls", cursor=f"{payload}.{mac[:-2]}"),
        get(world, "/v1/bulk/calls", cursor="not-a-cursor"),
        get(world, "/v1/bulk/calls", cursor="%%%.***"),
        get(world, "/v1/bulk/calls", cursor="A" * 5000 + "." + mac),
        get(world, "/v1/bulk/calls", cursor=cursor, direction="in"),  # other filters
        get(world, "/v1/hist/calls", HIST_KEY, cursor=cursor),  # another account, with its own key
    ]
    for response in refused:
        assert response.status_code == 400, response.text
        assert "cursor is invalid" in response.json()["error"]


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"from": "2026-10-01T00:00:00"},  # no zone
        {"to": "2026-13-01"},
        {"from": "2026-10-02", "to": "2026-10-01"},
        {"from": "2026-10-02", "to": "2026-10-02"},
        {"direction": "sideways"},
        {"outcome": "maybe"},
        {"phone": "call me"},
        {"limit": "0"},
        {"limit": "501"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"user": "u" * 300},
        {"from": "2" * 100},
        {"from": "0001-01-01T00:30:00+01:00"},  # before year 1 in UTC
        {"to": "9999-12-31T23:59:59.5Z"},  # its second ends after year 9999
        {"from": "20261001T10"},  # a time without a zone
    ],
)
def test_bad_filters_get_a_400_saying_what(world, bulk, params):
    response = get(world, "/v1/bulk/calls", **params)
    assert response.status_code == 400, response.text
    assert response.json()["error"].split()[0] in {*params, "from", "cursor"}


def test_one_call_timeline_delivery_recording_and_a_playback_link_that_plays(world):
    link = world.files.route("/calls/HIST-1.mp3", Reply(body=AUDIO, headers={"Content-Type": "audio/mpeg"}))
    headers = {"content-type": "application/x-www-form-urlencoded"}
    for fields in (
        seed_event("INCOMING", callid="HIST-1", crm_token=TOKEN),
        seed_event("ACCEPTED", callid="HIST-1", crm_token=TOKEN),
        seed_history(callid="HIST-1", link=link, crm_token=TOKEN, duration="42"),
    ):
        assert world.http.post("/v1/hist/cloudpbx", content=form(**fields), headers=headers).status_code == 200
    drained = world.http.post("/_local/queues/drain", params={"timeout": "30"}, timeout=40)
    assert drained.status_code == 200, drained.text

    response = get(world, "/v1/hist/calls/HIST-1", HIST_KEY)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-store"
    detail = response.json()
    call = detail["call"]
    assert call["outcome"] == "answered" and call["duration"] == 42 and call["phone"] == "+79101234567"
    assert call["users_rang"] == ["andy"]
    # Oldest first; records within one second (times have whole seconds) in a stable order.
    timeline = detail["timeline"]
    assert sorted((e["cmd"], e["type"]) for e in timeline) == [
        ("event", "ACCEPTED"),
        ("event", "INCOMING"),
        ("history", "in"),
    ]
    assert [e["received_at"] for e in timeline] == sorted(e["received_at"] for e in timeline)
    assert all(e["received_at"].endswith("Z") for e in detail["timeline"])
    assert TOKEN not in response.text  # payloads are kept without the PBX's key
    [delivery] = detail["deliveries"]
    assert delivery["crm"] == "minicrm" and delivery["state"] == "delivered", delivery
    assert world.mini.records  # the fake MiniCRM really got it
    recording = detail["recording"]
    assert recording["state"] == "stored" and recording["size"] == len(AUDIO)
    played = httpx.get(recording["playback_url"], follow_redirects=True, timeout=30)
    assert played.status_code == 200 and played.content == AUDIO
    assert recording["playback_url"].startswith(world.bridge.base_url + "/v1/hist/recordings/HIST-1?")

    listed = get(world, "/v1/hist/calls", HIST_KEY).json()["calls"]
    assert [c["call_id"] for c in listed] == ["HIST-1"] and listed[0]["recording_state"] == "stored"


def cli_run(bridge: LocalBridge, *args: str) -> Result:
    saved = dict(os.environ)
    try:
        return CliRunner().invoke(cli, ["--local", bridge.base_url, *args], catch_exceptions=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        forget()


def test_the_cli_reads_what_the_api_answers(world, bulk):
    api = get(world, "/v1/bulk/calls", limit=25, outcome="busy").json()
    listed = cli_run(world.bridge, "calls", "list", "-a", "bulk", "--outcome", "busy", "--limit", "25", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == api["calls"]
    assert f"--cursor {api['next_cursor']}" in listed.stderr

    following = cli_run(
        world.bridge,
        "calls",
        "list",
        "-a",
        "bulk",
        "--outcome",
        "busy",
        "-n",
        "25",
        "--cursor",
        api["next_cursor"],
        "--json",
    )
    api_next = get(world, "/v1/bulk/calls", limit=25, outcome="busy", cursor=api["next_cursor"]).json()
    assert json.loads(following.stdout) == api_next["calls"]

    shown = cli_run(world.bridge, "calls", "show", "BULK-00042", "-a", "bulk", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == get(world, "/v1/bulk/calls/BULK-00042").json()

    bad = cli_run(world.bridge, "calls", "list", "-a", "bulk", "--from", "yesterday")
    assert bad.exit_code == 2 and "from is not an ISO 8601" in bad.output


def test_no_api_key_reaches_the_runtime_log(world):
    """Every key presented above (right and wrong ones) stays out of what the runtime logged."""
    get(world, "/v1/hist/calls", "hist-api-key-wrong-00001")
    output = world.bridge.output()
    assert "GET /v1/hist/calls" in output or "/v1/hist/calls" in output  # the requests were logged
    for key in (BULK_KEY, HIST_KEY, "bulk-api-key-0000000002", "hist-api-key-wrong-00001", MINI_KEY):
        assert key not in output
