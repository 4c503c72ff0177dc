"""Missed calls end to end through the local runtime over HTTP, against fake MiniCRM and retailCRM
servers that validate every request: a group ring nobody answers is one record in each CRM; a day of
30 missed calls from 20 callers (some calling back, some called back by a manager) ends with exactly
the callback tasks each account's configuration implies, none twice after retailCRM answered 500
after saving and after the PBX sent every history twice; every missed call has a reason, and the
CallsIngested metric counts them by reason."""

from __future__ import annotations

import json
import os
from collections import Counter
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
from tests.support import form, seed_event, seed_history, trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
TOKEN = "e2e-missed-token-0001"
MINI_KEY, RETAIL_KEY = "e2e-minicrm-key-02", "e2e-retailcrm-key-02"
FORM = {"content-type": "application/x-www-form-urlencoded"}
GROUP_PHONE = "79169990000"

ACCOUNT = """\
account: {name}
timezone: Europe/Moscow
phone_region: RU
pbx:
  kind: cloudpbx
  crm_tokens: [{token}]
users:
  - {{pbx_user: andy, extension: "101", retailcrm_user_id: 1, minicrm_user_id: 11}}
  - {{pbx_user: daria, extension: "102", retailcrm_user_id: 2, minicrm_user_id: 22}}
  - {{pbx_user: boris, extension: "103", retailcrm_user_id: 3, minicrm_user_id: 33}}
  - {{pbx_user: senior, extension: "110", retailcrm_user_id: 10, minicrm_user_id: 100}}
missed_calls: {{owner: senior}}
contacts:
  - {{name: Known Caller, phones: ["+79160000001"], responsible: daria}}
crms:
  - {{kind: minicrm, base_url: "{mini}", api_key: {mini_key}, mode: batch, default_user_extension: "900"{mini_extra}}}
  - kind: retailcrm
    base_url: "{retail}"
    api_key: {retail_key}
    client_id: e2e-retail-client-0002
    mode: batch
    call_events: false
    default_user_id: 99
    callbacks: {callbacks}
"""
GENERAL_KEY = "e2e-minicrm-general-01"
# cbon's MiniCRM also gets callback ToDos (its general API), on the cards of the callers it knows.
MINI_EXTRA = {
    "cbon": f", system_id: 4242, general_api_key: {GENERAL_KEY}, callbacks: {{mode: all, todo_type: Call}}",
    "cbunk": "",
}
CALLBACKS = {
    # A task for every missed caller, ten minutes of his missed calls being one task.
    "cbon": "{mode: all, window_minutes: 10, due_minutes: 30}",
    # Only numbers retailCRM does not know, only 09:00-13:00 Moscow time; unknown callers become
    # customers, and so do numbers a manager calls that retailCRM does not know (seed 003 §4.3).
    "cbunk": '{mode: unknown_numbers, hours: "09:00-13:00", window_minutes: 10, create_customers: true}',
}


def caller(k: int) -> str:
    return f"7916000{k:04d}"


def e164(k: int) -> str:
    return "+" + caller(k)


def missed(k: int, at: str, n: int) -> dict[str, Any]:
    """A missed group call as a newer Cloud PBX reports it (a `history` with an unanswered status)."""
    status = "Busy" if k % 3 == 0 else ("NotAvailable" if k % 5 == 0 else "Missed")
    return seed_history(
        callid=f"m{k:02d}-{n}", crm_token=TOKEN, type="in", status=status, user="g_sales", phone=caller(k),
        duration="0", link=None, start=at,
    )  # fmt: skip


def answered(k: int, at: str, direction: str, user: str) -> dict[str, Any]:
    return seed_history(
        callid=f"a{k:02d}-{direction}", crm_token=TOKEN, type=direction, status="Success", user=user,
        phone=caller(k), duration="40", link=None, start=at,
    )  # fmt: skip


def morning() -> list[dict[str, Any]]:
    """20 of the day's 30 missed calls... and 5 more (the second calls within ten minutes)."""
    calls = [missed(k, f"20240501T06{5 * k:02d}00Z", 1) for k in range(1, 11)]  # 09:05-09:50 Moscow
    for k in range(11, 16):  # twice within ten minutes: one task
        minute = 10 * (k - 11)
        calls += [missed(k, f"20240501T07{minute:02d}00Z", 1), missed(k, f"20240501T07{minute + 4:02d}00Z", 2)]
    calls += [missed(k, f"20240501T08{5 * (k - 16):02d}00Z", 1) for k in range(16, 21)]
    return calls


def reaching() -> list[dict[str, Any]]:
    calls = [answered(k, "20240501T090000Z", "out", "andy") for k in range(1, 5)]  # a manager called back
    calls += [answered(k, "20240501T091000Z", "in", "boris") for k in (5, 6)]  # the client called again
    calls.append(answered(16, "20240501T093000Z", "out", "daria"))
    calls.append(answered(21, "20240501T094000Z", "out", "andy"))  # a number nobody knows yet
    return calls


def afternoon() -> list[dict[str, Any]]:
    """The second missed call of callers 16-20, three hours after the first: a new window."""
    return [missed(k, f"20240501T11{5 * (k - 16):02d}00Z", 2) for k in range(16, 21)]


@dataclass
class Crm:
    mini: FakeMiniCrm
    retail: FakeRetailCrm


@pytest.fixture(scope="module")
def crms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Crm], Path]]:
    found = {name: Crm(FakeMiniCrm(MINI_KEY), FakeRetailCrm(RETAIL_KEY)) for name in CALLBACKS}
    general = found["cbon"].mini
    general.system_id, general.general_key = 4242, GENERAL_KEY
    for k in range(1, 9):  # MiniCRM knows callers 1-8, each with a card
        general.contacts[k] = {"Id": k, "Name": f"Contact {k}", "Phone": f"06 916 000 {k:04d}"}
        general.projects[100 + k] = {"Id": 100 + k, "Name": f"Card {k}", "MainContactId": k}
    for k in range(1, 6):  # retailCRM knows callers 1-5 (their manager: daria)
        found["cbunk"].retail.customers[k] = {
            "id": k, "firstName": f"Customer {k}", "phones": [{"number": f"+7 (916) 000-{k:04d}"}], "managerId": 2,
        }  # fmt: skip
    directory = tmp_path_factory.mktemp("accounts")
    with (
        serve(found["cbon"].mini) as m1,
        serve(found["cbon"].retail) as r1,
        serve(found["cbunk"].mini) as m2,
        serve(found["cbunk"].retail) as r2,
    ):
        for name, mini, retail in (("cbon", m1, r1), ("cbunk", m2, r2)):
            text = ACCOUNT.format(
                name=name, token=TOKEN, mini=mini, retail=retail, mini_key=MINI_KEY, retail_key=RETAIL_KEY,
                callbacks=CALLBACKS[name], mini_extra=MINI_EXTRA[name],
            )  # fmt: skip
            (directory / f"{name}.yaml").write_text(trusting_fakes_yaml(text), encoding="utf-8")
        yield found, directory


@pytest.fixture(scope="module")
def bridge(crms: tuple[dict[str, Crm], Path]) -> Iterator[LocalBridge]:
    params = {
        "DeliveryRetryBaseSeconds": "0",
        "DeliveryHttpAttempts": "1",
        "DeliveryMaxAttempts": "8",
        "MissedCallSettleSeconds": "1",
    }
    with running_bridge(crms[1], params=params) as running:
        yield running


@pytest.fixture(scope="module")
def client(bridge: LocalBridge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bridge.base_url, timeout=120) as http:
        yield http


def post(client: httpx.Client, account: str, fields: dict[str, Any]) -> None:
    response = client.post(f"/v1/{account}/cloudpbx", content=form(**fields), headers=FORM)
    assert response.status_code == 200, response.text


def post_twice(client: httpx.Client, calls: list[dict[str, Any]]) -> None:
    """Every history to both accounts, each sent twice (the PBX's retry after a lost answer), some of
    the repeats at the same moment as the first: nothing may happen twice."""
    jobs = [(account, fields) for account in CALLBACKS for fields in calls] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda job: post(client, *job), jobs))


def deliver(client: httpx.Client) -> None:
    """Schedule runs (batch CRMs) until nothing is left to retry: retries are due at once here."""
    for _ in range(10):
        response = client.post("/_local/schedules/DeliveryDrainFunction")
        assert response.status_code == 200, response.text
        report = response.json()
        if '"claimed": 0' in json.dumps(report):  # nothing was due any more
            return
    raise AssertionError(f"deliveries still retried after 10 runs: {report}")


_dynamodb: list[Any] = []


def stored_call(bridge: LocalBridge, account: str, call_id: str) -> dict[str, Any]:
    if not _dynamodb:  # one client: making one costs more than the read
        _dynamodb.append(bridge.client("dynamodb"))
    item = _dynamodb[0].get_item(
        TableName=bridge.env["CALLS_TABLE"],
        Key={"pk": {"S": f"CALL#{account}#{call_id}"}, "sk": {"S": "CALL"}},
        ConsistentRead=True,
    )
    found: dict[str, Any] = item.get("Item", {})
    return found


def markers(retail: FakeRetailCrm) -> Counter[str]:
    return Counter(str(t["text"]).rsplit("[", 1)[-1].rstrip("]") for t in retail.tasks.values())


def task_for(retail: FakeRetailCrm, k: int) -> list[dict[str, Any]]:
    return [t for t in retail.tasks.values() if e164(k) in str(t["text"])]


def test_a_group_ring_nobody_answers_is_one_record_in_each_crm(
    client: httpx.Client, bridge: LocalBridge, crms: tuple[dict[str, Crm], Path]
) -> None:
    crm = crms[0]["cbon"]
    call_id = "GROUP-RING-1"
    for user in ("andy", "daria", "boris"):
        post(client, "cbon", seed_event("INCOMING", user, callid=call_id, phone=GROUP_PHONE, crm_token=TOKEN))
    for user in ("andy", "daria", "boris"):
        post(client, "cbon", seed_event("CANCELLED", user, callid=call_id, phone=GROUP_PHONE, crm_token=TOKEN))
    for _ in range(60):  # the settle waits for MissedCallSettleSeconds of silence
        client.post("/_local/queues/drain", params={"timeout": "5"})
        if stored_call(bridge, "cbon", call_id).get("final"):
            break
    call = stored_call(bridge, "cbon", call_id)
    assert call["outcome"]["S"] == "missed" and call["missed_reason"]["S"] == "no_answer"
    assert set(call["users_rang"]["SS"]) == {"andy", "daria", "boris"}  # which users rang stays ours
    deliver(client)
    records = [(ext, r) for ext, r in crm.mini.all_records() if r["Number"] == "+" + GROUP_PHONE]
    assert records == [("110", records[0][1])]  # once, under the missed-call owner (senior)
    assert records[0][1]["CallType"] == 2
    uploads = [c for c in crm.retail.calls.values() if c["phone"] == "+" + GROUP_PHONE]
    assert len(uploads) == 1 and uploads[0]["userId"] == 10 and uploads[0]["result"] == "no answer"
    assert len([t for t in crm.retail.tasks.values() if GROUP_PHONE in t["text"]]) == 1  # one callback task


def test_a_day_of_missed_calls_ends_with_exactly_the_callback_tasks_the_configuration_implies(
    client: httpx.Client, bridge: LocalBridge, crms: tuple[dict[str, Crm], Path]
) -> None:
    found = crms[0]
    on, unknown = found["cbon"].retail, found["cbunk"].retail
    on.fail_after_save.update({"tasks/create": 3})
    found["cbon"].mini.fail_after_save.update({"todo/create": 2})
    unknown.fail_after_save.update({"tasks/create": 3, "customers/create": 2})
    post_twice(client, morning())
    deliver(client)
    for retail in (on, unknown):
        retail.fail_after_save.update({"tasks/edit": 2})
    found["cbon"].mini.fail_after_save.update({"todo/update": 1})
    post_twice(client, reaching())
    deliver(client)
    post_twice(client, afternoon())
    deliver(client)
    assert on.fail_after_save == {"tasks/create": 0, "tasks/edit": 0}  # every fault happened
    assert unknown.fail_after_save == {"tasks/create": 0, "customers/create": 0, "tasks/edit": 0}
    assert on.errors == unknown.errors == [] and found["cbon"].mini.errors == found["cbunk"].mini.errors == []

    # mode on: one task per caller and window, none twice; reached callers' tasks are done.
    assert all(n == 1 for n in markers(on).values())
    expected = {k: 1 for k in range(1, 16)} | {k: 2 for k in range(16, 21)}
    assert {k: len(task_for(on, k)) for k in range(1, 22)} == expected | {21: 0}
    done = {k for k in range(1, 21) for t in task_for(on, k) if t["complete"]}
    assert done == {1, 2, 3, 4, 5, 6, 16}
    assert [t["complete"] for t in sorted(task_for(on, 16), key=lambda t: t["id"])] == [True, False]
    closed = task_for(on, 1)[0]
    assert "called back by andy" in closed["commentary"]
    assert closed["performerId"] == 2  # caller 1's responsible manager (our directory): daria
    assert {t["performerId"] for k in range(2, 21) for t in task_for(on, k)} == {10}  # the missed-call owner
    assert task_for(on, 3)[0]["datetime"] == "2024-05-01 09:45"  # due 30 minutes after 09:15 Moscow
    assert on.customers == {}  # this account creates none

    # MiniCRM: a ToDo on the card of each caller it knows (1-8), none twice; reached ones closed.
    todos = found["cbon"].mini.todos.values()
    assert found["cbon"].mini.fail_after_save == {"todo/create": 0, "todo/update": 0}
    assert sorted(t["ProjectId"] for t in todos) == [100 + k for k in range(1, 9)]
    assert {t["ProjectId"] - 100 for t in todos if t["Status"] == "Closed"} == {1, 2, 3, 4, 5, 6}
    assert {t["ProjectId"]: t["UserId"] for t in todos}[101] == 22  # daria, caller 1's responsible
    assert {t["UserId"] for t in todos if t["ProjectId"] != 101} == {100}  # the missed-call owner
    assert all(t["Type"] == "Call" for t in todos)

    # unknown numbers only, 09:00-13:00 Moscow: callers 1-5 are customers, the afternoon is outside.
    assert all(n == 1 for n in markers(unknown).values())
    assert {k: len(task_for(unknown, k)) for k in range(1, 22)} == {k: int(6 <= k <= 20) for k in range(1, 22)}
    assert {k for k in range(1, 21) for t in task_for(unknown, k) if t["complete"]} == {6, 16}
    created = [c for c in unknown.customers.values() if str(c.get("externalId", "")).startswith("callbridge-")]
    assert sorted(c["phones"][0]["number"] for c in created) == sorted(e164(k) for k in (*range(6, 21), 21))
    managers = {c["phones"][0]["number"]: c["managerId"] for c in created}
    # The missed-call owner's, but caller 16's is daria's since she called him back, and the number
    # andy called first is andy's.
    assert managers == {e164(k): 10 for k in range(6, 21)} | {e164(16): 2, e164(21): 1}
    assert all(t["customer"]["id"] in unknown.customers for t in unknown.tasks.values())

    # Every call once in each CRM, whatever the repeats and the retries.
    day_ids = {f["callid"] for f in (*morning(), *reaching(), *afternoon())}
    for name in CALLBACKS:
        assert day_ids <= set(found[name].retail.calls)
        records = [r for _, r in found[name].mini.all_records() if r["Number"] != "+" + GROUP_PHONE]
        assert len(records) == len(day_ids)


def test_each_missed_call_has_a_reason_shown_and_counted(bridge: LocalBridge) -> None:
    reasons: Counter[str] = Counter()
    for fields in (*morning(), *afternoon()):
        call = stored_call(bridge, "cbon", fields["callid"])
        reasons[call["missed_reason"]["S"]] += 1
    assert sum(reasons.values()) == 30
    assert reasons == {"busy": 9, "unavailable": 4, "no_answer": 17}
    lines = json_lines(bridge.output())
    counted = Counter(x["Reason"] for x in lines if "CallsIngested" in x and x.get("Outcome") != "answered")
    # Both accounts had the day's 30 missed calls, each counted once despite the repeats; cbon had
    # the group ring too.
    assert counted == {"busy": 18, "unavailable": 8, "no_answer": 35}

    shown = show(bridge, "m03-1", "cbon")
    assert "missed_reason: busy" in shown
    data = json.loads(show(bridge, "m03-1", "cbon", "--json"))
    retail = next(d for d in data["deliveries"] if d["crm"] == "retailcrm")
    assert retail["state"] == "delivered" and retail["crm_answer"]["callback"].startswith("callback: task")


def json_lines(output: str) -> list[dict[str, Any]]:
    """The runtime's JSON log lines; handlers running at once may print two on one line."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    for line in output.splitlines():
        at = line.find("{")
        while 0 <= at < len(line):
            try:
                value, end = decoder.raw_decode(line, at)
            except ValueError:
                break
            if isinstance(value, dict):
                found.append(value)
            at = line.find("{", end)
    return found


def show(bridge: LocalBridge, call_id: str, account: str, *extra: str) -> str:
    """`callbridge calls show` in-process; the environment the CLI sets is restored afterwards."""
    saved = dict(os.environ)
    try:
        result = CliRunner().invoke(
            cli, ["--local", bridge.base_url, "calls", "show", call_id, "-a", account, *extra], catch_exceptions=False
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_settings()
        aws.reset_clients()
        secrets.reset_secret_cache()
        clear_account_cache()
    assert result.exit_code == 0, result.output
    return result.output
