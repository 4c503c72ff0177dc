"""Lost Cloud PBX `history` webhooks, end to end through the local runtime over HTTP, against a fake
PBX whose `history` command answers CSV as the PBX writes it (its zone's offset, a malformed line)
and fake MiniCRM and retailCRM servers on 127.0.0.1 that validate every request:

- a day of calls with 10 % of the history webhooks dropped ends, after one reconciliation run, with
  every call stored once and delivered once to each CRM; a second run changes nothing;
- an answered call whose history never comes is recorded from its events after the quiet time,
  delivered once, and corrected in place by a late history webhook or by the reconciliation,
  never a second call in the store or in a CRM."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from boto3.dynamodb.types import TypeDeserializer

from callbridge_local.testing import LocalBridge, running_bridge
from tests.fakes.cloudpbx_api import PATH, FakeCloudPbx, HistoryCall
from tests.fakes.crm_server import serve
from tests.fakes.minicrm import FakeMiniCrm
from tests.fakes.retailcrm import FakeRetailCrm
from tests.support import call_ids, form, trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
ACCOUNT_ID = "recon"
TOKEN = "e2e-recon-crm-token-0001"
PBX_TOKEN = "e2e-recon-pbx-token-0001"
MINI_KEY, RETAIL_KEY = "e2e-recon-minicrm-key", "e2e-recon-retail-key"
DAY = 100
FORM = {"content-type": "application/x-www-form-urlencoded"}
USERS = ["andy", "daria"]
# A line the PBX wrote with a time in another layout: reported, the others stored.
JUNK = "bad-line-0001,in,79169990000,andy,74996861574,07.07.2017 16:14:08,0,11,"

ACCOUNT = """\
account: {name}
timezone: Europe/Moscow
phone_region: RU
pbx:
  kind: cloudpbx
  api_url: "{pbx}{path}"
  token: {pbx_token}
  crm_tokens: [{token}]
users:
  - {{pbx_user: andy, extension: "101", retailcrm_user_id: 1}}
  - {{pbx_user: daria, extension: "102", retailcrm_user_id: 2}}
crms:
  - {{kind: minicrm, base_url: "{mini}", api_key: {mini_key}, mode: batch, default_user_extension: "900", number_format: e164}}
  - {{kind: retailcrm, base_url: "{retail}", api_key: {retail_key}, mode: batch,
      client_id: e2e-recon-client-0001, default_user_id: 99}}
"""


@dataclass
class World:
    pbx: FakeCloudPbx
    mini: FakeMiniCrm
    retail: FakeRetailCrm
    bridge: LocalBridge
    client: httpx.Client


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    pbx, mini, retail = FakeCloudPbx(PBX_TOKEN), FakeMiniCrm(MINI_KEY), FakeRetailCrm(RETAIL_KEY)
    pbx.junk_lines = [JUNK]
    directory: Path = tmp_path_factory.mktemp("accounts")
    with serve(pbx) as pbx_url, serve(mini) as mini_url, serve(retail) as retail_url:
        text = ACCOUNT.format(
            name=ACCOUNT_ID, pbx=pbx_url, path=PATH, pbx_token=PBX_TOKEN, token=TOKEN,
            mini=mini_url, mini_key=MINI_KEY, retail=retail_url, retail_key=RETAIL_KEY,
        )  # fmt: skip
        (directory / f"{ACCOUNT_ID}.yaml").write_text(trusting_fakes_yaml(text), encoding="utf-8")
        params = {
            # Long enough that "not final yet" is seen after the last event's answer on a loaded
            # machine (at 2 s a slow answer outlasted it), short enough that the drain's wait is short.
            "HistoryQuietSeconds": "6",
            "MissedCallSettleSeconds": "1",
            "DeliveryRetryBaseSeconds": "0",
            "DeliveryHttpAttempts": "1",
        }
        with (
            running_bridge(directory, params=params) as bridge,
            httpx.Client(base_url=bridge.base_url, timeout=120) as client,
        ):
            yield World(pbx, mini, retail, bridge, client)


def call_item(world: World, call_id: str) -> dict[str, Any] | None:
    item = (
        world.bridge.client("dynamodb")
        .get_item(
            TableName=world.bridge.env["CALLS_TABLE"],
            Key={"pk": {"S": f"CALL#{ACCOUNT_ID}#{call_id}"}, "sk": {"S": "CALL"}},
            ConsistentRead=True,
        )
        .get("Item")
    )
    return {k: TypeDeserializer().deserialize(v) for k, v in item.items()} if item else None


def post(world: World, fields: dict[str, Any]) -> None:
    body = form(crm_token=TOKEN, **fields)
    for _ in range(5):  # the PBX sends again after a 503 (the emulator's rare hiccup)
        response = world.client.post(f"/v1/{ACCOUNT_ID}/cloudpbx", content=body, headers=FORM)
        if response.status_code != 503:
            break
    assert response.status_code == 200, response.text


def reconcile(world: World) -> dict[str, Any]:
    response = world.client.post("/_local/schedules/CloudPbxReconcileFunction")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return dict(result.get("result", result)["accounts"][ACCOUNT_ID])


def deliver(world: World) -> None:
    """What AWS does on its own time: the queues (settles, deliveries) and the batch drain."""
    drained = world.client.post("/_local/queues/drain", params={"timeout": "60"})
    assert drained.status_code == 200, drained.text
    ran = world.client.post("/_local/schedules/DeliveryDrainFunction")
    assert ran.status_code == 200, ran.text


def crm_requests(world: World) -> tuple[int, int]:
    return world.retail.requests, len(world.mini.requests)


def digits(value: Any) -> str:
    return "".join(ch for ch in str(value) if ch.isdigit())


def mini_records(world: World, phone: str) -> list[dict[str, Any]]:
    return [r for _, r in world.mini.all_records() if digits(r.get("Number")) == phone]


def day_call(n: int, now: datetime) -> HistoryCall:
    kind = ("in", "out", "in", "in", "out", "in", "in", "missed", "out", "in")[n % 10]
    return HistoryCall(
        uid=f"d{n:04d}-{now:%H%M%S}",
        type=kind,
        client=f"7916{n:07d}",
        account=USERS[n % 2],
        via="74996861574",
        start=(now - timedelta(minutes=170) + timedelta(seconds=40 * n)).replace(microsecond=0),
        wait=n % 20,
        duration=0 if kind == "missed" else 15 + n % 300,
    )


def webhook(call: HistoryCall) -> dict[str, Any]:
    """The history webhook the PBX sends for the same call (a newer PBX: with `start`)."""
    return {
        "cmd": "history",
        "type": "out" if call.type == "out" else "in",
        "status": "missed" if call.type == "missed" else "Success",
        "phone": call.client,
        "user": call.account,
        "duration": str(call.duration),
        "callid": call.uid,
        "diversion": call.via,
        "start": call.start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ"),
    }


def test_a_day_with_10_percent_of_history_webhooks_lost(world: World) -> None:
    now = datetime.now(UTC)
    day = [day_call(n, now) for n in range(DAY)]
    world.pbx.history.extend(day)
    dropped = [c for n, c in enumerate(day) if n % 10 == (n // 10) % 10]  # one in ten, every kind
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda c: post(world, webhook(c)), [c for c in day if c not in dropped]))
    deliver(world)
    ids = {c.uid for c in day}
    assert len(set(call_ids(world.bridge, ACCOUNT_ID)) & ids) == DAY - len(dropped)

    started = time.monotonic()
    first = reconcile(world)
    took = time.monotonic() - started
    assert (first["stored"], first["corrected"], first["known"]) == (len(dropped), 0, DAY - len(dropped)), first
    assert first["malformed"] == 1 and first["bad_lines"] == [
        {"line": 2, "reason": "start is not an ISO-8601 time with an offset"}
    ]
    assert took < 30, took

    for lost in dropped:  # as its webhook would have stored it
        call = call_item(world, lost.uid)
        assert call is not None and call["final"]
        assert call["started_at"] == lost.start.strftime("%Y-%m-%dT%H:%M:%SZ")  # +03:00 in the CSV, UTC here
        direction, outcome = ("in", "missed") if lost.type == "missed" else (lost.type, "answered")
        assert (call["direction"], call["outcome"], call["user"]) == (direction, outcome, lost.account)
        assert (call["duration"], call["waiting_time"], call["start_source"]) == (lost.duration, lost.wait, "pbx")
        assert (call["phone"], call["our_number"]) == (f"+{lost.client}", "+74996861574")
    assert {c.type for c in dropped} == {"in", "out", "missed"}

    deliver(world)
    assert world.retail.errors == [] and world.mini.errors == []
    assert ids <= set(world.retail.calls)
    assert all(world.retail.received[i] == 1 for i in ids)
    assert sum(1 for _, r in world.mini.all_records() if digits(r.get("Number")) in {c.client for c in day}) == DAY

    before = crm_requests(world)
    second = reconcile(world)
    assert (second["stored"], second["corrected"], second["known"]) == (0, 0, DAY), second
    deliver(world)
    assert crm_requests(world) == before  # nothing sent twice
    assert len(set(call_ids(world.bridge, ACCOUNT_ID)) & ids) == DAY
    assert world.pbx.errors == []
    assert PBX_TOKEN not in world.bridge.output()


def answered_by_events(world: World, call_id: str, phone: str, talk_s: float) -> None:
    post(world, {"cmd": "event", "type": "INCOMING", "phone": phone, "user": "andy", "callid": call_id})
    post(world, {"cmd": "event", "type": "INCOMING", "phone": phone, "user": "daria", "callid": call_id})
    post(world, {"cmd": "event", "type": "ACCEPTED", "phone": phone, "user": "daria", "callid": call_id})
    post(world, {"cmd": "event", "type": "CANCELLED", "phone": phone, "user": "andy", "callid": call_id})
    time.sleep(talk_s)
    post(world, {"cmd": "event", "type": "COMPLETED", "phone": phone, "user": "daria", "callid": call_id})


def test_an_answered_call_without_history_is_recorded_from_its_events_then_corrected_in_place(world: World) -> None:
    late, never = "ev-late-history-0001", "ev-never-history-0002"
    answered_by_events(world, late, "79250000001", 1.2)
    ended = call_item(world, late)  # within the quiet time: answered, ended, not final yet
    assert ended is not None and not ended.get("final") and ended["completed_at"]
    answered_by_events(world, never, "79250000002", 1.2)
    deliver(world)  # the settle queue waits the quiet time, then the derived calls go to the CRMs

    derived = call_item(world, late)
    assert derived is not None and derived["final"], derived
    assert (derived["outcome"], derived["user"], derived["derived_from"]) == ("answered", "daria", "events")
    assert "derived_from_events" in derived["flags"] and derived["start_source"] == "first_event"
    assert 1 <= derived["duration"] <= 3 and derived["events_duration"] == derived["duration"]
    assert world.retail.received[late] == 1 and world.retail.calls[late]["duration"] == derived["duration"]
    assert len(mini_records(world, "79250000001")) == 1
    before = crm_requests(world)

    # The history comes late after all: the same call, corrected in place, not delivered again.
    post(world, {"cmd": "history", "type": "in", "status": "Success", "phone": "79250000001", "user": "daria",
                 "duration": "47", "callid": late})  # fmt: skip
    corrected = call_item(world, late)
    assert corrected is not None
    assert (corrected["duration"], corrected["pbx_status"], corrected.get("derived_from")) == (47, "Success", None)
    assert "derived_from_events" not in corrected.get("flags", set()) and "corrected_at" in corrected
    assert corrected["events_duration"] == derived["duration"]  # what the CRMs were sent, kept

    # The other one never gets a webhook: the reconciliation reads it from the PBX and corrects it.
    start = datetime.fromisoformat(str(derived["started_at"]).replace("Z", "+00:00"))
    world.pbx.history.append(HistoryCall(never, "in", "79250000002", "daria", "74996861574", start, 3, 61))
    result = reconcile(world)
    assert (result["stored"], result["corrected"]) == (0, 1), result
    fixed = call_item(world, never)
    assert fixed is not None and (fixed["duration"], fixed.get("derived_from")) == (61, None)
    assert reconcile(world)["corrected"] == 0  # its marker is there now: a second run changes nothing

    deliver(world)
    assert crm_requests(world) == before  # neither correction sends anything
    assert world.retail.received[late] == world.retail.received[never] == 1
    assert len(mini_records(world, "79250000001")) == len(mini_records(world, "79250000002")) == 1
    ids = call_ids(world.bridge, ACCOUNT_ID)
    assert ids.count(late) == ids.count(never) == 1
