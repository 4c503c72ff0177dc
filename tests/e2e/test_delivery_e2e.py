"""CRM delivery end to end through the local runtime over HTTP: Cloud PBX histories → calls →
deliveries → fake MiniCRM and retailCRM servers on 127.0.0.1 that validate every request. A day of
mixed calls in batch mode (the schedule's drain) and in realtime mode (the queue worker alone), an
outage of three schedule runs (30 minutes at the default rate; retries due at once with
DeliveryRetryBaseSeconds=0), and the `callbridge deliveries` commands over parked deliveries."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
from tests.fakes.crm_server import serve
from tests.fakes.minicrm import FakeMiniCrm
from tests.fakes.retailcrm import FakeRetailCrm
from tests.integration.recording_server import RecordingServer, Reply
from tests.support import form, seed_history, trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
TOKEN = "e2e-delivery-token-0001"
MINI_KEY, RETAIL_KEY = "e2e-minicrm-key-01", "e2e-retailcrm-key-01"
DAY = 500  # calls of the day
USERS = ["andy", "daria", "boris"]
FORM = {"content-type": "application/x-www-form-urlencoded"}

ACCOUNT = """\
account: {name}
timezone: Europe/Moscow
phone_region: RU
pbx:
  kind: cloudpbx
  crm_tokens: [{token}]
users:
  - {{pbx_user: andy, extension: "101", retailcrm_user_id: 1}}
  - {{pbx_user: daria, extension: "102", retailcrm_user_id: 2}}
  - {{pbx_user: boris, extension: "103", retailcrm_user_id: 3, minicrm_extension: "B3"}}
crms:
  - {{kind: minicrm, base_url: "{mini}", api_key: {mini_key}, mode: {mode}, default_user_extension: "900"}}
  - {{kind: retailcrm, base_url: "{retail}", api_key: {retail_key}, mode: {mode},
      client_id: e2e-retail-client-0001, default_user_id: 99}}
recordings:
  allow_hosts: ["127.0.0.1:{files_port}"]   # the test's file server (that port only): never on AWS
  basic_auth: {{username: minicrm, password: {rec_password}}}
"""
REC_PASSWORD = "e2e-recordings-password-01"


@dataclass
class Crm:
    mini: FakeMiniCrm
    retail: FakeRetailCrm
    mini_url: str = ""
    retail_url: str = ""


@pytest.fixture(scope="module")
def files() -> Iterator[RecordingServer]:
    server = RecordingServer().start()
    audio = b"ID3" + random.Random(4).randbytes(2000)
    server.route("/rec.mp3", Reply(200, audio, {"Content-Type": "audio/mpeg"}))
    # A PBX slow to serve its recordings: the call is final long before its recording is stored.
    server.route("/slow.mp3", Reply(200, audio, {"Content-Type": "audio/mpeg"}, delay_s=1.0))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def crms() -> Iterator[dict[str, Crm]]:
    found = {name: Crm(FakeMiniCrm(MINI_KEY), FakeRetailCrm(RETAIL_KEY)) for name in ("dbatch", "dreal", "ddown")}
    with (
        serve(found["dbatch"].mini) as m1,
        serve(found["dbatch"].retail) as r1,
        serve(found["dreal"].mini) as m2,
        serve(found["dreal"].retail) as r2,
        serve(found["ddown"].mini) as m3,
        serve(found["ddown"].retail) as r3,
    ):
        for crm, mini, retail in ((found["dbatch"], m1, r1), (found["dreal"], m2, r2), (found["ddown"], m3, r3)):
            crm.mini_url, crm.retail_url = mini, retail
        yield found


@pytest.fixture(scope="module")
def bridge(
    tmp_path_factory: pytest.TempPathFactory, crms: dict[str, Crm], files: RecordingServer
) -> Iterator[LocalBridge]:
    directory: Path = tmp_path_factory.mktemp("accounts")
    for name, mode in (("dbatch", "batch"), ("dreal", "realtime"), ("ddown", "batch")):
        crm = crms[name]
        text = ACCOUNT.format(
            name=name, token=TOKEN, mode=mode, mini=crm.mini_url, retail=crm.retail_url,
            mini_key=MINI_KEY, retail_key=RETAIL_KEY, files_port=files.port, rec_password=REC_PASSWORD,
        )  # fmt: skip
        (directory / f"{name}.yaml").write_text(trusting_fakes_yaml(text), encoding="utf-8")
    params = {"DeliveryRetryBaseSeconds": "0", "DeliveryHttpAttempts": "1", "DeliveryMaxAttempts": "5"}
    with running_bridge(directory, params=params) as running:
        yield running


@pytest.fixture(scope="module")
def client(bridge: LocalBridge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bridge.base_url, timeout=300) as http:
        yield http


def history_fields(account: str, n: int, link: str) -> dict[str, Any]:
    kind = n % 5
    return seed_history(
        callid=f"{account}-{n:05d}",
        crm_token=TOKEN,
        type="out" if kind in (1, 3) else "in",
        status={0: "Success", 1: "Success", 2: "missed", 3: "Busy", 4: "Success"}[kind],
        user="ghost" if n % 13 == 0 else USERS[n % len(USERS)],
        phone=f"7916{n:07d}",
        duration="0" if kind in (2, 3) else str(20 + n % 200),
        link=link if n % 10 == 0 else None,
        start=f"20240501T{8 + n % 10:02d}{n % 60:02d}00Z",
    )


def post_day(client: httpx.Client, account: str, count: int, link: str) -> list[str]:
    def post(n: int) -> None:
        body = form(**history_fields(account, n, link))
        for _ in range(5):  # the PBX sends a history again after a 503 (the emulator's rare hiccup)
            response = client.post(f"/v1/{account}/cloudpbx", content=body, headers=FORM)
            if response.status_code != 503:
                break
        assert response.status_code == 200, response.text

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(post, range(count)))
    return [f"{account}-{n:05d}" for n in range(count)]


def drain_queues(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/_local/queues/drain", params={"timeout": "240"})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def run_schedule(client: httpx.Client) -> Any:
    response = client.post("/_local/schedules/DeliveryDrainFunction")
    assert response.status_code == 200, response.text
    return response.json()


def assert_once(crm: Crm, ids: list[str]) -> None:
    assert crm.retail.errors == [] and crm.mini.errors == []
    assert sorted(crm.retail.calls) == sorted(ids)
    assert all(crm.retail.received[i] == 1 for i in ids)
    assert crm.mini.received == len(crm.mini.all_records()) == len(ids)  # one record per call, none twice


def test_a_day_in_batch_mode(client: httpx.Client, crms: dict[str, Crm], files: RecordingServer) -> None:
    crm = crms["dbatch"]
    ids = post_day(client, "dbatch", DAY, files.url("/rec.mp3"))
    drain_queues(client)  # the recordings are fetched; batch CRMs hear nothing yet
    assert crm.retail.requests == 0 and crm.mini.attempts == 0
    run_schedule(client)
    assert_once(crm, ids)
    assert max(len(u) for u in crm.retail.uploads) <= 50
    assert len(crm.retail.uploads) == crm.retail.requests == math.ceil(DAY / 50)
    extensions = [r["UserExtension"] for r in crm.mini.requests]
    assert sorted(extensions) == ["101", "102", "900", "B3"]  # one request per user, the default for "ghost"
    recorded = [c for c in crm.retail.calls.values() if "recordUrl" in c]
    assert len(recorded) == DAY // 10
    with httpx.Client(timeout=10) as http:  # the signed link plays the stored recording
        assert http.get(recorded[0]["recordUrl"], follow_redirects=True).content.startswith(b"ID3")
    assert sum(1 for _, r in crm.mini.all_records() if "ReferenceId" in r) == DAY // 10
    run_schedule(client)  # nothing twice
    assert crm.retail.requests == math.ceil(DAY / 50) and len(crm.mini.requests) == 4


def why_missing(bridge: LocalBridge, crm: Crm, ids: list[str]) -> str:
    """For a failed run: the deliveries of the calls retailCRM lacks, and the runtime's errors."""
    missing = sorted(set(ids) - set(crm.retail.calls))
    table = bridge.client("dynamodb")
    shown = []
    for call_id in missing[:5]:
        items = table.query(
            TableName=bridge.env["CALLS_TABLE"],
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CALL#dreal#{call_id}"}},
        )["Items"]
        shown.append(f"{call_id}: {items}")
    errors = [line for line in bridge.output().splitlines() if "ERROR" in line or "Traceback" in line]
    return f"{len(missing)} missing\n" + "\n".join(shown) + "\nruntime errors:\n" + "\n".join(errors[-30:])


def test_a_day_in_realtime_mode(
    client: httpx.Client, bridge: LocalBridge, crms: dict[str, Crm], files: RecordingServer
) -> None:
    crm = crms["dreal"]
    # MiniCRM downloads a recording from the URL template the moment it saves the call.
    crm.mini.recording_url = f"{bridge.base_url}/v1/dreal/recordings?Rec={{ref}}"
    crm.mini.recording_auth = ("minicrm", REC_PASSWORD)
    ids = post_day(client, "dreal", DAY, files.url("/slow.mp3"))
    # The queues alone (no schedule): every call goes at once, retailCRM's recorded ones with the
    # link to their recording, whether or not the file is stored yet; MiniCRM's wait for the file,
    # woken by its storing. Nothing is left for the drain's grace period.
    drained = drain_queues(client)
    assert drained["drained"], drained
    assert set(crm.retail.calls) == set(ids), why_missing(bridge, crm, ids)
    assert_once(crm, ids)
    crm.mini.wait_for_downloads()
    references = sorted(r["ReferenceId"] for _, r in crm.mini.all_records() if "ReferenceId" in r)
    assert sorted(crm.mini.downloads) == references
    got = {ref: (d.status, d.content_type, d.body[:3]) for ref, d in crm.mini.downloads.items()}
    assert set(got.values()) == {(200, "audio/mpeg", b"ID3")}, got
    # No batching window: a batch is what a poller finds waiting, up to 10 messages (both CRMs): at
    # most one upload per call, several calls to one when they queue up.
    assert max(len(u) for u in crm.retail.uploads) <= 10
    assert len(crm.retail.uploads) == crm.retail.requests <= DAY
    recorded = [c for c in crm.retail.calls.values() if "recordUrl" in c]
    assert len(recorded) == DAY // 10  # every recorded call has its recording's link
    assert sum(1 for _, r in crm.mini.all_records() if "ReferenceId" in r) == DAY // 10
    before = (crm.retail.requests, len(crm.mini.requests))
    report = run_schedule(client)  # the drain finds nothing due, and nothing is sent twice
    assert (crm.retail.requests, len(crm.mini.requests)) == before, report
    assert_once(crm, ids)


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


def test_an_outage_then_recovery_and_the_operator_commands(
    client: httpx.Client, bridge: LocalBridge, crms: dict[str, Crm], files: RecordingServer
) -> None:
    crm = crms["ddown"]
    ids = post_day(client, "ddown", 40, files.url("/rec.mp3"))
    drain_queues(client)
    crm.retail.down_status, crm.mini.down_status = 500, 503
    for _ in range(3):  # 30 minutes of the 10-minute schedule
        run_schedule(client)
    assert crm.retail.calls == {} and crm.mini.records == {}
    crm.retail.down_status = crm.mini.down_status = None
    run_schedule(client)
    assert_once(crm, ids)

    more = post_day(client, "ddown", 45, files.url("/rec.mp3"))[40:]
    drain_queues(client)
    crm.retail.down_status = 502
    for _ in range(5):  # DeliveryMaxAttempts=5: parked as failed, never dropped
        run_schedule(client)
    listed = cli_run(bridge, "deliveries", "failed", "--account", "ddown", "--crm", "retailcrm")
    assert listed.exit_code == 0, listed.output
    assert all(call_id in listed.output for call_id in more) and "gave up after 5 tries" in listed.output
    crm.retail.down_status = None
    retried = cli_run(bridge, "deliveries", "retry", "--account", "ddown", "--crm", "retailcrm")
    assert retried.exit_code == 0 and "5 failed deliveries of account ddown are pending again" in retried.output
    run_schedule(client)
    assert sorted(crm.retail.calls) == sorted(ids + more) and all(crm.retail.received[i] == 1 for i in ids + more)
    empty = cli_run(bridge, "deliveries", "failed", "--account", "ddown")
    assert "no failed deliveries" in empty.output
