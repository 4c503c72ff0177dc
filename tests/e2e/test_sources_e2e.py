"""Issue 6's "Done when", through the local runtime over HTTP, against a fake telediscount API and a
fake ccrm.pl on 127.0.0.1: the vendor documentation's telediscount webhooks, a lost `finished` webhook recovered by
the reconciliation exactly once (recording included, the API key never stored or logged), and a
ccrm.pl window of 2,500 calls read completely, once, in UTC, through a 403 "request limit" and
while calls keep arriving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from boto3.dynamodb.types import TypeDeserializer

from callbridge_local.testing import LocalBridge, running_bridge
from tests.fakes.base import serve
from tests.fakes.ccrm import FakeCcrm, record
from tests.fakes.telediscount import AUDIO, FakeTelediscount
from tests.support import call_ids, trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TD_KEY = "abonent1609ssHJka8732kfrsd6778ahd982h"
TD_SECRET = "e2e-telediscount-secret-0001"
CCRM_KEY = "e2e-ccrm-api-key-0001"
SEED_CALL = "c1f926a8f5727b77f9cbf39d8f35d061"
# The vendor documentation's webhooks, verbatim (their setup_time is the vendor documentation's 14-digit placeholder).
SEED_INCOMING = {
    "num_a": "79039998877",
    "num_m": "79037778899",
    "setup_time": "98798798797897",
    "api_call_id": SEED_CALL,
}
SEED_FINISHED = {
    "num_a": "79039998877",
    "num_m": "79037778899",
    "num_b": "SIP/0000000672",
    "setup_time": "98798798797897",
    "connection_time": "12",
    "waiting_time": "5",
    "api_call_id": SEED_CALL,
}
WARSAW = ZoneInfo("Europe/Warsaw")

TELE_ACCOUNT = """\
account: tele
phone_region: RU
pbx:
  kind: telediscount
  api_url: {base}/api.php/telephony
  api_key: {key}
  webhook_secret: {secret}
users:
  - {{pbx_user: olga, name: Olga Manoli, sip_account: SIP/00000000672}}
"""
CCRM_ACCOUNT = """\
account: ccrmpl
phone_region: PL
pbx:
  kind: ccrm
  base_url: {base}
  api_key: {key}
users:
  - {{pbx_user: jan, name: Jan Kowalski, ccrm_internal: "107"}}
"""


@pytest.fixture(scope="module")
def telediscount() -> Iterator[tuple[FakeTelediscount, str]]:
    fake = FakeTelediscount(api_key=TD_KEY)
    with serve(fake) as base:
        yield fake, base


@pytest.fixture(scope="module")
def ccrm() -> Iterator[tuple[FakeCcrm, str]]:
    fake = FakeCcrm(api_key=CCRM_KEY)
    with serve(fake) as base:
        yield fake, base


@pytest.fixture(scope="module")
def bridge(
    tmp_path_factory: pytest.TempPathFactory,
    telediscount: tuple[FakeTelediscount, str],
    ccrm: tuple[FakeCcrm, str],
) -> Iterator[LocalBridge]:
    directory: Path = tmp_path_factory.mktemp("accounts")
    (directory / "tele.yaml").write_text(
        trusting_fakes_yaml(TELE_ACCOUNT.format(base=telediscount[1], key=TD_KEY, secret=TD_SECRET)), encoding="utf-8"
    )
    (directory / "ccrmpl.yaml").write_text(
        trusting_fakes_yaml(CCRM_ACCOUNT.format(base=ccrm[1], key=CCRM_KEY)), encoding="utf-8"
    )
    params = {"CcrmBackoffMilliseconds": "0", "CcrmFirstLookbackMinutes": "120", "RecordingRetryBaseSeconds": "0"}
    with running_bridge(directory, params=params) as running:
        yield running


@pytest.fixture(scope="module")
def client(bridge: LocalBridge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bridge.base_url, timeout=60) as http:
        yield http


def call_item(bridge: LocalBridge, account: str, call_id: str) -> dict[str, Any] | None:
    item = (
        bridge.client("dynamodb")
        .get_item(
            TableName=bridge.env["CALLS_TABLE"],
            Key={"pk": {"S": f"CALL#{account}#{call_id}"}, "sk": {"S": "CALL"}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return {k: TypeDeserializer().deserialize(v) for k, v in item.items()} if item else None


def items_of(bridge: LocalBridge, account: str, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The items (pk CALL#{account}#{id}, sk) that exist among `keys`, by batch reads."""
    dynamodb, table = bridge.client("dynamodb"), bridge.env["CALLS_TABLE"]
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), 100):
        request: dict[str, Any] = {
            table: {
                "Keys": [{"pk": {"S": f"CALL#{account}#{i}"}, "sk": {"S": sk}} for i, sk in keys[start : start + 100]],
                "ConsistentRead": True,
            }
        }
        while request:
            response = dynamodb.batch_get_item(RequestItems=request)
            found.extend(
                {k: TypeDeserializer().deserialize(v) for k, v in i.items()} for i in response["Responses"][table]
            )
            request = response.get("UnprocessedKeys") or {}
    return found


def without_recording(call: dict[str, Any] | None) -> dict[str, Any]:
    """The call without what the recordings worker adds (it runs on its own in the local runtime)."""
    return {k: v for k, v in (call or {}).items() if not k.startswith("recording") and k != "updated_at"}


def schedule(client: httpx.Client, function: str, account: str) -> dict[str, Any]:
    response = client.post(f"/_local/schedules/{function}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return dict(result.get("result", result)["accounts"][account])


def webhook(client: httpx.Client, event: str, params: dict[str, str], secret: str = TD_SECRET) -> httpx.Response:
    return client.get(f"/v1/tele/telediscount/{secret}/{event}", params=params)


# -- telediscount -------------------------------------------------------------------------------


def test_seed_webhooks_make_the_right_call(bridge: LocalBridge, client: httpx.Client) -> None:
    assert webhook(client, "incoming", SEED_INCOMING).status_code == 200
    ringing = call_item(bridge, "tele", SEED_CALL)
    assert ringing is not None and not ringing.get("final")
    assert (ringing["direction"], ringing["phone"], ringing["our_number"]) == ("in", "+79039998877", "+79037778899")
    assert ringing["setup_time_raw"] == "98798798797897"  # the junk kept, the receipt time used, flagged
    assert "start_unparsed" in ringing["flags"]

    assert webhook(client, "finished", SEED_FINISHED).status_code == 200
    call = call_item(bridge, "tele", SEED_CALL)
    assert call is not None
    assert (call["final"], call["outcome"], call["duration"], call["waiting_time"]) == (True, "answered", 12, 5)
    assert call["user"] == "olga"  # SIP/0000000672 is SIP/00000000672 without a zero
    assert call["started_at"] == ringing["first_event_at"] and call["start_source"] == "first_event"
    assert call["setup_time_raw"] == "98798798797897" and "start_unparsed" in call["flags"]
    assert call["recording_url"].endswith(f"/get_record?api_call_id={SEED_CALL}")
    assert TD_KEY not in str(call)

    # The PBX sends it again: nothing changes.
    assert webhook(client, "finished", SEED_FINISHED).status_code == 200
    assert without_recording(call_item(bridge, "tele", SEED_CALL)) == without_recording(call)


def test_wrong_secret_or_account_is_a_404_and_the_secret_is_never_logged(
    bridge: LocalBridge, client: httpx.Client
) -> None:
    assert webhook(client, "finished", SEED_FINISHED, secret="not-the-secret-000000").status_code == 404
    assert client.get(f"/v1/nobody/telediscount/{TD_SECRET}/finished", params=SEED_FINISHED).status_code == 404
    assert client.get(f"/v1/ccrmpl/telediscount/{TD_SECRET}/finished", params=SEED_FINISHED).status_code == 404
    bad = webhook(client, "finished", {"num_a": "79039998877"})
    assert bad.status_code == 400 and "api_call_id" in bad.json()["error"]
    time.sleep(0.5)
    logs = bridge.output()
    assert logs.count(TD_SECRET) == 2  # only the two cabinet lines printed at start, never a log line
    assert "not-the-secret" not in logs


def test_a_lost_finished_webhook_is_recovered_by_reconciliation_exactly_once(
    bridge: LocalBridge, client: httpx.Client, telediscount: tuple[FakeTelediscount, str]
) -> None:
    fake, _ = telediscount
    lost = "5a1e0c0ffee0000000000000000000d1"
    setup = int(time.time()) - 600
    assert (
        webhook(client, "incoming", {**SEED_INCOMING, "api_call_id": lost, "setup_time": str(setup)}).status_code == 200
    )
    fake.calls = [
        {  # the call whose `finished` never came
            "api_call_id": lost,
            "setup_time": str(setup * 1000),  # 13 digits: milliseconds
            "service_name": "ivr",
            "num_a": "79039998877",
            "num_m": "79037778899",
            "num_b": "SIP/00000000672",
            "connection_time": "42",
            "num_b_waiting_time": "7",
            "recorder_file": "rec.mp3",
        },
        {**SEED_FINISHED, "service_name": "ivr"},  # stored by its webhook already (and undated)
        {  # older than the window: left alone
            "api_call_id": "01d0000000000000000000000000000a",
            "setup_time": str(int(time.time()) - 30 * 86400),
            "num_a": "79039998877",
            "connection_time": "0",
        },
    ]
    first = schedule(client, "TelediscountReconcileFunction", "tele")
    assert (first["stored"], first["in_window"], first["undated"]) == (1, 1, 1)
    call = call_item(bridge, "tele", lost)
    assert call is not None
    assert call["started_at"] == datetime.fromtimestamp(setup, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (call["outcome"], call["duration"], call["user"], call["start_source"]) == ("answered", 42, "olga", "pbx")

    assert schedule(client, "TelediscountReconcileFunction", "tele")["stored"] == 0
    # The webhook turns up after all: the call stays as it was.
    late = {**SEED_FINISHED, "api_call_id": lost, "setup_time": str(setup), "connection_time": "41"}
    assert webhook(client, "finished", late).status_code == 200
    assert without_recording(call_item(bridge, "tele", lost)) == without_recording(call)
    assert call_item(bridge, "tele", "01d0000000000000000000000000000a") is None

    # Recordings come through get_record with the key added at fetch time only.
    assert client.post("/_local/queues/drain", params={"timeout": "20"}).status_code == 200
    stored = call_item(bridge, "tele", lost)
    assert stored is not None and stored["recording_state"] == "stored"
    body = bridge.client("s3").get_object(Bucket=bridge.env["RECORDINGS_BUCKET"], Key=stored["recording"]["key"])
    assert body["Body"].read() == AUDIO
    record_requests = [q for p, q in fake.requests if p.endswith("/get_record")]
    assert record_requests and all(q["abonent_api_key"] == TD_KEY for q in record_requests)
    assert TD_KEY not in str(items_of(bridge, "tele", [(lost, "CALL"), (lost, "EVT#telediscount#finished#")]))
    assert TD_KEY not in bridge.output()


# -- ccrm.pl ------------------------------------------------------------------------------------


def test_ccrm_window_of_2500_calls_arrives_complete_once_in_utc(
    bridge: LocalBridge, client: httpx.Client, ccrm: tuple[FakeCcrm, str]
) -> None:
    fake, _ = ccrm
    now_local = datetime.now(WARSAW).replace(tzinfo=None, microsecond=0)
    calls = [
        record(
            f"00000000-0000-4000-8000-{i:012d}", (now_local - timedelta(seconds=60 + i)).strftime("%Y-%m-%d %H:%M:%S")
        )
        for i in range(2500)
    ]
    fake.add(*calls)
    fake.fail_once = {2}
    arrivals: list[dict[str, Any]] = []

    def arrive(page: int) -> None:
        # While the poll reads page 1: one late record lands inside the window (shifting every
        # later record by one), one after the window's end.
        if page == 1 and not arrivals:
            arrivals.append(record("aaaaaaaa-0000-4000-8000-000000000001", calls[2000]["callDate"], status="noAnswer"))
            later = (datetime.now(WARSAW) + timedelta(seconds=2)).strftime("%Y-%m-%d %H:%M:%S")
            arrivals.append(record("aaaaaaaa-0000-4000-8000-000000000002", later, callDirection="OUT", status="BUSY"))
            fake.add(*arrivals)

    fake.after_page = arrive
    first = schedule(client, "CcrmPollFunction", "ccrmpl")
    polled = time.monotonic()
    assert first["status"] == "complete"
    assert fake.pages_served() == [1, 2, 2, 3]  # page 2 refused once, read again; 3 pages in all
    time.sleep(max(0.0, 2.5 - (time.monotonic() - polled)))  # the second arrival's callDate is past now
    second = schedule(client, "CcrmPollFunction", "ccrmpl")
    assert second["status"] == "complete"

    expected = {c["uuid"] for c in calls} | {a["uuid"] for a in arrivals}
    ids = call_ids(bridge, "ccrmpl")
    assert len(ids) == len(set(ids)) == 2502 and set(ids) == expected  # complete, each call once
    assert first["stored"] + second["stored"] == 2502  # every call handed on once
    checked = sorted(set(sorted(expected)[::25]) | {a["uuid"] for a in arrivals} | {calls[0]["uuid"]})
    stored = items_of(bridge, "ccrmpl", [(uuid, "CALL") for uuid in checked])
    markers = items_of(bridge, "ccrmpl", [(uuid, "EVT#ccrm#call#") for uuid in checked])
    assert len(stored) == len(markers) == len(set(checked))

    sample = next(i for i in stored if i["call_id"] == calls[0]["uuid"])
    local = datetime.strptime(calls[0]["callDate"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=WARSAW)
    assert sample["started_at"] == local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (sample["user"], sample["outcome"], sample["phone"]) == ("jan", "answered", "+48501234567")
    late_out = next(i for i in stored if i["call_id"] == "aaaaaaaa-0000-4000-8000-000000000002")
    assert (late_out["direction"], late_out["outcome"]) == ("out", "busy")
    missed = next(i for i in stored if i["call_id"] == "aaaaaaaa-0000-4000-8000-000000000001")
    assert missed["outcome"] == "missed"
    assert fake.errors == []
    assert CCRM_KEY not in bridge.output()
