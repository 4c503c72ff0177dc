"""CRM delivery against moto (server mode) and fake MiniCRM / retailCRM servers on 127.0.0.1 that
validate every request: exactly once, batching limits, outages with simulated time, rejected records,
leases, parking, and DynamoDB reads proportional to what is pending."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import delivery as delivery_handler
from callbridge.core import accounts, handoff
from callbridge.core.config import AccountConfig, CrmSettings
from callbridge.features.admin import apply_account
from callbridge.features.delivery import engine
from callbridge.infra import aws, clock, secrets, settings
from callbridge.infra.http import RetryPolicy
from callbridge.store import deliveries as store
from callbridge.store.dynamo import to_item
from callbridge_local.drivers import sqs_event
from tests.fakes.crm_server import serve
from tests.fakes.minicrm import FakeMiniCrm
from tests.fakes.retailcrm import FakeRetailCrm
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
MINI_KEY, RETAIL_KEY = "minicrm-voip-key-01", "retailcrm-api-key-01"
USERS = ["andy", "daria", "boris", "vera"]  # mapped; "ghost" is not
T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)


@dataclass
class Crms:
    mini: FakeMiniCrm
    retail: FakeRetailCrm
    mini_url: str
    retail_url: str


@pytest.fixture
def crms() -> Iterator[Crms]:
    mini, retail = FakeMiniCrm(MINI_KEY), FakeRetailCrm(RETAIL_KEY)
    with serve(mini) as mini_url, serve(retail) as retail_url:
        yield Crms(mini, retail, mini_url, retail_url)


@pytest.fixture
def now() -> Iterator[list[datetime]]:
    current = [T0]
    clock.set_clock(lambda: current[0])
    try:
        yield current
    finally:
        clock.set_clock(None)


def account_config(
    name: str, crms: Crms, mode: str, *, pbx: dict[str, Any] | None = None, more_users: Sequence[dict[str, Any]] = ()
) -> AccountConfig:
    return AccountConfig.model_validate(
        trusting_fakes(
            {
                "account": name,
                "timezone": "Europe/Moscow",
                "phone_region": "RU",
                "pbx": pbx or {"kind": "cloudpbx", "crm_tokens": ["delivery-test-token-0001"]},
                "crms": [
                    {
                        "kind": "minicrm",
                        "base_url": crms.mini_url,
                        "api_key": MINI_KEY,
                        "mode": mode,
                        "number_format": "national",
                        "default_user_extension": "900",
                    },
                    {
                        "kind": "retailcrm",
                        "base_url": crms.retail_url,
                        "api_key": RETAIL_KEY,
                        "mode": mode,
                        "client_id": "retail-client-id-0001",
                        "default_user_id": 99,
                        "site": "shop1",
                    },
                ],
                "users": [
                    {"pbx_user": u, "extension": str(101 + i), "retailcrm_user_id": i + 1} for i, u in enumerate(USERS)
                ]
                + list(more_users),
            }
        )
    )


def use_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings.reset_settings()


@pytest.fixture
def setup(cloud: dict[str, str], crms: Crms, monkeypatch: pytest.MonkeyPatch) -> Crms:
    # In-process retries without sleeping: the outage is simulated with the clock, not waited for.
    monkeypatch.setattr(engine, "HTTP_RETRY", RetryPolicy(attempts=3, backoff_initial_s=0, backoff_max_s=0, jitter_s=0))
    use_settings(monkeypatch, PUBLIC_BASE_URL="https://bridge.example.com", DELIVERY_REALTIME_GRACE_SECONDS="300")
    for mode in ("batch", "realtime"):
        apply_account(account_config(mode, crms, mode))
    accounts.clear_account_cache()
    secrets.reset_secret_cache()
    return crms


def make_call(account: str, n: int, *, when: datetime = T0) -> dict[str, Any]:
    """A day of mixed calls: answered in/out, missed (rang one or two users), unmapped user, recordings."""
    kind = n % 6
    user = "ghost" if n % 17 == 0 else USERS[n % len(USERS)]
    call: dict[str, Any] = {
        "pk": f"CALL#{account}#c{n:05d}",
        "sk": "CALL",
        "account": account,
        "call_id": f"c{n:05d}",
        "source": "cloudpbx",
        "final": True,
        "phone": f"+7916{n:07d}",
        "duration": 0 if kind in (2, 3) else 30 + n % 300,
        "started_at": clock.iso(when - timedelta(minutes=n % 600)),
        "finalized_at": clock.iso(when),
    }
    if kind in (0, 4):
        call.update(direction="in", outcome="answered", user=user)
    elif kind in (1, 5):
        call.update(direction="out", outcome="answered" if kind == 1 else "no_answer", user=user)
    else:
        rang = [USERS[n % 4], USERS[(n + 1) % 4]] if kind == 3 else ["ghost" if n % 17 == 0 else USERS[n % 4]]
        call.update(direction="in", outcome="missed", users_rang=set(rang))
    if n % 3 == 0:
        call.update(recording_url="https://pbx.example.com/rec.mp3", recording_state="stored")
    return call


def store_calls(account: str, count: int, *, start: int = 0) -> list[str]:
    client = aws.dynamodb()
    table = settings.get_settings().calls_table
    items = [make_call(account, n) for n in range(start, start + count)]
    for i in range(0, len(items), 25):
        requests: Any = [{"PutRequest": {"Item": to_item(c)}} for c in items[i : i + 25]]
        client.batch_write_item(RequestItems={table: requests})
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(
            pool.map(
                lambda i: handoff.call_final(accounts.get_account(account), i["call_id"]),
                items,
            )
        )
    return [str(i["call_id"]) for i in items]


def store_delivered_history(account: str, count: int, *, start: int) -> None:
    """`count` calls already delivered to both CRMs, written directly (the history of a busy account)."""
    client = aws.dynamodb()
    table = settings.get_settings().calls_table
    items: list[dict[str, Any]] = []
    for n in range(start, start + count):
        call = make_call(account, n)
        items.append(call)
        for crm in ("minicrm", "retailcrm"):
            items.append(
                {
                    "pk": call["pk"],
                    "sk": f"DLV#{crm}",
                    "account": account,
                    "call_id": call["call_id"],
                    "crm": crm,
                    "state": "delivered",
                    "delivered_at": clock.iso(T0),
                }
            )
    for i in range(0, len(items), 25):
        requests: Any = [{"PutRequest": {"Item": to_item(c)}} for c in items[i : i + 25]]
        client.batch_write_item(RequestItems={table: requests})


def expected_minicrm_records(account: str, ids: list[str]) -> int:
    """One MiniCRM record per call: a missed call that rang two users is still one call."""
    return len(ids)


def assert_exactly_once(crms: Crms, ids: list[str]) -> None:
    assert crms.retail.errors == [] and crms.mini.errors == []
    assert set(crms.retail.calls) == set(ids)
    assert all(crms.retail.received[i] == 1 for i in ids)


def test_a_day_in_batch_mode_arrives_once_in_the_fewest_requests(setup: Crms, now: list[datetime]) -> None:
    ids = store_calls("batch", 200)
    assert handoff.call_final(accounts.get_account("batch"), ids[0]) == 0  # a repeat creates nothing
    report = engine.drain(accounts=["batch"])
    assert report.delivered == 2 * len(ids) and report.rejected == report.failed == 0
    assert_exactly_once(setup, ids)
    uploads = setup.retail.uploads
    assert max(len(u) for u in uploads) <= 50 and len(uploads) == math.ceil(len(ids) / 50)
    # MiniCRM: one request per user (UserExtension) for the whole batch.
    extensions = [r["UserExtension"] for r in setup.mini.requests]
    assert sorted(extensions) == sorted(set(extensions)) == ["101", "102", "103", "104", "900"]
    assert setup.mini.received == expected_minicrm_records("batch", ids)
    # Mapping details: default users for the unmapped, recordings only when stored, formats.
    first = setup.retail.calls["c00000"]  # unmapped "ghost", recorded, answered incoming
    assert first["userId"] == 99 and "code" not in first and first["site"] == "shop1"
    assert first["recordUrl"].startswith("https://bridge.example.com/v1/batch/recordings/c00000?exp=")
    assert first["date"] == (T0.astimezone(clock_tz("Europe/Moscow"))).strftime("%Y-%m-%d %H:%M:%S")
    assert setup.retail.calls["c00001"]["code"] == "102" and "recordUrl" not in setup.retail.calls["c00001"]
    assert setup.retail.calls["c00002"]["result"] == "no answer"
    ghost = [r for ext, r in setup.mini.all_records() if ext == "900"]
    assert ghost and all(r["Number"].startswith("8916") for r in ghost)
    recorded = [r for _, r in setup.mini.all_records() if "ReferenceId" in r]
    assert {r["ReferenceId"] for r in recorded} == {i for i in ids if int(i[1:]) % 3 == 0}
    assert {r["CallType"] for _, r in setup.mini.all_records()} == {0, 1, 2}
    flagged = store.of_call("batch", "c00000")
    assert all("default_user" in d["flags"] for d in flagged)
    # Nothing pending: the next run sends nothing.
    before = (len(setup.retail.uploads), len(setup.mini.requests))
    assert engine.drain(accounts=["batch"]).claimed == 0
    assert (len(setup.retail.uploads), len(setup.mini.requests)) == before


def clock_tz(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def test_realtime_through_the_queue_worker(setup: Crms, now: list[datetime]) -> None:
    ids = store_calls("realtime", 20)
    sqs = aws.sqs()
    queue_url = settings.get_settings().delivery_queue_url
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    handled = 0
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        result = delivery_handler.handler(sqs_event(messages, arn, "us-east-1"), None)
        assert result == {"batchItemFailures": []}
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        handled += len(messages)
    assert handled == 2 * len(ids)
    assert_exactly_once(setup, ids)
    # The drain finds nothing left behind, even once the grace period has passed.
    now[0] += timedelta(hours=1)
    assert engine.drain(accounts=["realtime"]).claimed == 0


def assert_recovered(setup: Crms, now: list[datetime], ids: list[str]) -> None:
    """The CRMs are back: the schedule's next runs deliver every call, once."""
    delivered = 0
    for _ in range(8):  # backoff: 1, 2, 4, 8, 16 minutes… the next due run delivers
        delivered += engine.drain(accounts=["batch"]).delivered
        now[0] += timedelta(minutes=10)
    assert delivered == 2 * len(ids)
    assert_exactly_once(setup, ids)
    assert setup.mini.received == expected_minicrm_records("batch", ids)


def test_an_outage_of_30_minutes_then_every_call_arrives_once(setup: Crms, now: list[datetime]) -> None:
    ids = store_calls("batch", 30)
    setup.retail.down_status, setup.mini.down_status = 500, 503
    for _ in range(4):  # 0, 10, 20, 30 minutes: the schedule keeps trying, backing off
        report = engine.drain(accounts=["batch"])
        assert report.delivered == 0 and report.failed == 0
        now[0] += timedelta(minutes=10)
    # While down, a run sends one request per CRM (then stops), not one per batch.
    assert setup.retail.requests <= 4 * 3 and setup.mini.attempts <= 4 * 3
    setup.retail.down_status = setup.mini.down_status = None
    assert_recovered(setup, now, ids)


def test_a_crm_that_times_out_for_30_minutes_then_every_call_arrives_once(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(monkeypatch, DELIVERY_HTTP_TIMEOUT_SECONDS="1", DELIVERY_HTTP_ATTEMPTS="1")
    ids = store_calls("batch", 30)
    # Hung: no answer within a minute. A worker that does not give up after DELIVERY_HTTP_TIMEOUT_SECONDS
    # hangs with it: with the default 10 s, the four runs below would take 40 s at the least (a hung
    # request per run), with 1 s they take a few. Measured around the runs alone, not by the test's
    # timeout, which also counted storing and recovering on whatever the machine was busy with.
    setup.retail.stall.start(60.0)
    setup.mini.stall.start(60.0)
    began = time.monotonic()
    for _ in range(4):  # 0, 10, 20, 30 minutes
        report = engine.drain(accounts=["batch"])
        assert report.delivered == 0 and report.failed == 0 and report.retried == 2 * len(ids)
        now[0] += timedelta(minutes=10)
    hung = time.monotonic() - began
    assert hung < 4 * 10, f"four runs against a hung CRM took {hung:.1f} s: the 1 s timeout was not applied"
    # A hung CRM costs one timed-out request per CRM and run, not one per batch or user.
    assert setup.retail.requests == 4 and setup.mini.attempts == 4
    setup.retail.stall.recover()
    setup.mini.stall.recover()
    assert_recovered(setup, now, ids)


def test_a_rejected_record_keeps_the_rest(setup: Crms, now: list[datetime]) -> None:
    ids = store_calls("batch", 40)
    bad = make_call("batch", 7)["phone"]
    setup.retail.reject_phones.add(bad)
    setup.mini.reject_numbers.add("8" + bad[2:])
    report = engine.drain(accounts=["batch"])
    assert report.rejected == 2 and report.delivered == 2 * len(ids) - 2
    assert set(setup.retail.calls) == set(ids) - {"c00007"}
    rejected = store.list_parked("batch", "retailcrm", store.REJECTED)
    assert [d["call_id"] for d in rejected] == ["c00007"] and "Phone is not valid" in rejected[0]["reason"]
    mini_rejected = store.list_parked("batch", "minicrm", store.REJECTED)
    assert [d["call_id"] for d in mini_rejected] == ["c00007"] and "Skipped" in mini_rejected[0]["reason"]
    now[0] += timedelta(hours=2)
    assert engine.drain(accounts=["batch"]).claimed == 0  # not resent forever


def test_failed_after_n_attempts_is_parked_visible_and_retryable(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(monkeypatch, DELIVERY_MAX_ATTEMPTS="3", DELIVERY_RETRY_BASE_SECONDS="0")
    ids = store_calls("batch", 5)
    setup.retail.down_status = 503
    reports = [engine.drain(accounts=["batch"]) for _ in range(4)]
    assert sum(r.failed for r in reports) == len(ids)
    failed = store.list_parked("batch", "retailcrm", store.FAILED)
    assert sorted(d["call_id"] for d in failed) == ids and all("gave up after 3 tries" in d["reason"] for d in failed)
    assert engine.drain(accounts=["batch"]).claimed == 0
    setup.retail.down_status = None
    assert all(store.requeue("batch", i, "retailcrm", clock.now()) for i in ids)
    assert engine.drain(accounts=["batch"]).delivered == len(ids)
    assert_exactly_once(setup, ids)


def test_two_workers_never_take_the_same_delivery(setup: Crms, now: list[datetime]) -> None:
    ids = store_calls("batch", 60)
    reports: list[engine.Report] = []
    threads = [threading.Thread(target=lambda: reports.append(engine.drain(accounts=["batch"]))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.delivered for r in reports) == 2 * len(ids)
    assert_exactly_once(setup, ids)
    assert setup.mini.received == expected_minicrm_records("batch", ids)


def test_a_crash_after_the_crm_answered_is_a_duplicate_to_the_crm(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = store_calls("batch", 10)
    real = store.mark_delivered

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the Lambda died")

    monkeypatch.setattr(store, "mark_delivered", crash)
    with pytest.raises(RuntimeError):
        engine.process(accounts.get_account("batch"), retail_crm("batch"), ids)
    monkeypatch.setattr(store, "mark_delivered", real)
    assert engine.drain(accounts=["batch"]).delivered == len(ids)  # MiniCRM only: retailCRM is leased
    now[0] += timedelta(seconds=settings.get_settings().delivery_lease_s + 1)
    report = engine.drain(accounts=["batch"])
    assert report.delivered == len(ids) and report.duplicates == len(ids)
    assert set(setup.retail.calls) == set(ids) and all(setup.retail.received[i] == 2 for i in ids)


def retail_crm(account: str) -> CrmSettings:
    return next(c for c in accounts.get_account(account).settings.crms if c.kind == "retailcrm")


def test_reads_stay_proportional_to_pending(setup: Crms, now: list[datetime]) -> None:
    client = aws.dynamodb()
    read_items = [0]

    def count(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        read_items[0] += int(parsed.get("Count") or 0)
        read_items[0] += sum(len(v) for v in (parsed.get("Responses") or {}).values())
        read_items[0] += 1 if parsed.get("Item") else 0

    client.meta.events.register("after-call.dynamodb.Query", count)
    client.meta.events.register("after-call.dynamodb.BatchGetItem", count)
    client.meta.events.register("after-call.dynamodb.GetItem", count)
    client.meta.events.register("after-call.dynamodb.Scan", count)

    def measured(pending: int, start: int) -> float:
        store_calls("batch", pending, start=start)
        read_items[0] = 0
        assert engine.drain(accounts=["batch"]).delivered == 2 * pending
        return read_items[0] / pending

    small = measured(20, 0)
    store_delivered_history("batch", 2000, start=1000)  # 100x more calls, delivered
    big = measured(20, 5000)
    print(f"reads per pending call: {small:.2f} with no history, {big:.2f} with 100x delivered calls")
    assert big <= small * 1.05 + 0.1 and big < 5


def test_retailcrm_call_events_from_the_event_webhook(setup: Crms, now: list[datetime]) -> None:
    import cloudpbx
    from tests.support import form, http_event, seed_event

    def post(kind: str, user: str = "andy") -> None:
        fields = seed_event(kind, user, callid="EV-1", crm_token="delivery-test-token-0001", diversion="74951112233")
        event = http_event("/v1/realtime/cloudpbx", form(**fields), account="realtime")
        assert cloudpbx.handler(event, None)["statusCode"] == 200

    work = work_queues
    post("INCOMING")
    post("INCOMING")  # a PBX retry: no second card
    post("INCOMING", "ghost")  # unmapped: nobody's card to open
    work()  # while it rings (a ringing card taken after the call ended is not shown)
    post("COMPLETED")
    work()
    assert setup.retail.errors == []
    assert sorted(setup.retail.events, key=lambda e: str(e["type"])) == [
        {"phone": "+79101234567", "type": "hangup", "codes": ["101"], "callExternalId": "EV-1", "userIds": [1],
         "hangupStatus": "answered", "externalPhone": "+74951112233", "site": "shop1"},
        {"phone": "+79101234567", "type": "in", "codes": ["101"], "callExternalId": "EV-1", "userIds": [1],
         "externalPhone": "+74951112233", "site": "shop1"},
    ]  # fmt: skip


@pytest.mark.parametrize("number", ["", "anonymous"])
def test_a_withheld_caller_rings_without_a_retailcrm_card_on_purpose(
    setup: Crms, now: list[datetime], number: str
) -> None:
    """retailCRM's call event needs the client's phone (its card is the customer the phone finds): a
    withheld caller's ringing and hang-up send it nothing - deliberately, not a refused event."""
    import cloudpbx
    from callbridge.store import calls
    from tests.support import form, http_event, seed_event

    sqs = aws.sqs()
    queue_url = settings.get_settings().delivery_queue_url
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for kind in ("INCOMING", "COMPLETED"):
        fields = seed_event(kind, "andy", callid="EV-HIDDEN", phone=number, crm_token="delivery-test-token-0001")
        event = http_event("/v1/realtime/cloudpbx", form(**fields), account="realtime")
        assert cloudpbx.handler(event, None)["statusCode"] == 200
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        assert delivery_handler.handler(sqs_event(messages, arn, "us-east-1"), None) == {"batchItemFailures": []}
    assert calls.get_call("realtime", "EV-HIDDEN") is not None  # the call itself is kept
    assert setup.retail.errors == [] and setup.retail.events == []


def test_a_failed_hand_off_is_done_again_by_the_pbx_retry(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The history is stored but creating its deliveries fails: the webhook answers 503, and the PBX's
    retry (a repeat for the store) must still hand the call on, once."""
    import cloudpbx
    from callbridge.core import handoff as handoff_module
    from tests.support import form, http_event, seed_history

    real = handoff_module.call_final
    calls_made: list[str] = []

    def failing_once(account: accounts.Account, call_id: str, **options: Any) -> int:
        calls_made.append(call_id)
        if len(calls_made) == 1:
            raise RuntimeError("DynamoDB throttled the delivery items")
        return real(account, call_id, **options)

    monkeypatch.setattr(handoff_module, "call_final", failing_once)
    fields = seed_history(callid="RETRY-1", crm_token="delivery-test-token-0001", link=None)
    event = http_event("/v1/batch/cloudpbx", form(**fields), account="batch")
    assert cloudpbx.handler(event, None)["statusCode"] == 503
    assert store.of_call("batch", "RETRY-1") == []
    assert cloudpbx.handler(event, None)["statusCode"] == 200  # the PBX sends it again
    assert len(store.of_call("batch", "RETRY-1")) == 2
    assert cloudpbx.handler(event, None)["statusCode"] == 200  # and again: nothing new
    assert len(store.of_call("batch", "RETRY-1")) == 2
    report = engine.drain(accounts=["batch"])
    assert report.delivered == 2
    assert setup.retail.received["RETRY-1"] == 1


def queued_delivery_messages() -> list[Any]:
    return _queued(settings.get_settings().delivery_queue_url)


def queued_card_messages() -> list[Any]:
    return _queued(settings.get_settings().live_card_queue_url)


def _queued(queue_url: str) -> list[Any]:
    sqs = aws.sqs()
    found: list[Any] = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        found.extend(messages)
    return found


def work_queues() -> None:
    """What the two event sources would do with what is queued now: the cards (LiveCardFunction),
    then the calls (DeliveryFunction); neither hands a message back."""
    import live_cards

    if cards := queued_card_messages():
        arn = "arn:aws:sqs:us-east-1:123456789012:LiveCardQueue"
        assert live_cards.handler(sqs_event(cards, arn, "us-east-1"), None) == {"batchItemFailures": []}
    if calls := queued_delivery_messages():
        arn = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
        assert delivery_handler.handler(sqs_event(calls, arn, "us-east-1"), None) == {"batchItemFailures": []}


def test_one_queue_batch_goes_out_in_the_fewest_requests(setup: Crms, now: list[datetime]) -> None:
    ids = store_calls("realtime", 40)
    messages = queued_delivery_messages()
    assert len(messages) == 2 * len(ids)
    arn = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
    assert delivery_handler.handler(sqs_event(messages, arn, "us-east-1"), None) == {"batchItemFailures": []}
    assert_exactly_once(setup, ids)
    assert setup.retail.requests == 1  # 40 calls, one upload
    extensions = [r["UserExtension"] for r in setup.mini.requests]
    assert sorted(extensions) == sorted(set(extensions))  # one MiniCRM request per user


def test_a_slow_crm_holds_back_no_other_crms_calls(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """retailCRM hangs (each request 1.5 s, then a 504) while MiniCRM answers: MiniCRM's calls of
    the same batch go at once, not after retailCRM's retries; retailCRM's are retried later."""
    ids = store_calls("realtime", 4)
    messages = sorted(queued_delivery_messages(), key=lambda m: json.loads(m["Body"])["crm"] != "retailcrm")
    setup.retail.stall.start(1.5)
    arrived: list[float] = []
    real = setup.mini.handle

    def stamped(*args: Any) -> Any:
        arrived.append(time.monotonic())
        return real(*args)

    monkeypatch.setattr(setup.mini, "handle", stamped)
    started = time.monotonic()
    try:
        report, failed = engine.deliver_messages([(m["MessageId"], m["Body"]) for m in messages])
    finally:
        setup.retail.stall.recover()
    assert failed == [] and report.retried == len(ids) and setup.retail.calls == {}
    assert len(setup.mini.all_records()) == len(ids)
    assert arrived and max(arrived) - started < 1.0, f"MiniCRM waited {max(arrived) - started:.1f} s"


def test_a_crash_fails_only_the_messages_it_concerns(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = store_calls("realtime", 6)
    messages = queued_delivery_messages()
    real = engine.default_connector

    def broken_minicrm(crm: CrmSettings, account: accounts.Account) -> Any:
        if crm.kind == "minicrm":
            raise RuntimeError("SSM unreachable")
        return real(crm, account)

    monkeypatch.setattr(engine, "default_connector", broken_minicrm)
    arn = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
    result = delivery_handler.handler(sqs_event(messages, arn, "us-east-1"), None)
    to_minicrm = {m["MessageId"] for m in messages if json.loads(m["Body"])["crm"] == "minicrm"}
    assert {f["itemIdentifier"] for f in result["batchItemFailures"]} == to_minicrm
    assert set(setup.retail.calls) == set(ids) and setup.mini.requests == []


def recording_not_stored_yet(account: str, n: int) -> str:
    """A final call of `account` whose recording the worker is still fetching (its link from the PBX,
    no recording state yet), handed on as a history webhook would: deliveries, then the fetch."""
    call = make_call(account, n)
    call.pop("recording_state")
    aws.dynamodb().put_item(TableName=settings.get_settings().calls_table, Item=to_item(call))
    handoff.call_stored(accounts.get_account(account), str(call["call_id"]), newly_final=True, fetch_recording=True)
    return str(call["call_id"])


def play(url: str) -> dict[str, Any]:
    """retailCRM's player asking for a `recordUrl` it got (RecordingsFunction)."""
    from urllib.parse import urlsplit

    from tests.integration.test_recordings_pipeline import signed

    path = urlsplit(url).path
    assert path.startswith("/v1/")
    answer: dict[str, Any] = signed(url)
    return answer


def test_a_realtime_call_reaches_the_crms_before_its_recording_is_stored(setup: Crms, now: list[datetime]) -> None:
    """The recording server is slow. retailCRM, whose player fetches `recordUrl` when someone plays
    it, gets the call at once with its link, which answers "not yet, ask again" until the file is
    stored, and then plays. MiniCRM downloads the file the moment it has the call: its delivery is
    held, and storing the recording queues it, with its `ReferenceId`. Nothing goes twice."""
    from callbridge.store import calls
    from callbridge.store.updates import Update

    call_id = recording_not_stored_yet("realtime", 9)
    messages = queued_delivery_messages()
    assert [json.loads(m["Body"])["crm"] for m in messages] == ["retailcrm"]  # MiniCRM's is held
    arn = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
    assert delivery_handler.handler(sqs_event(messages, arn, "us-east-1"), None) == {"batchItemFailures": []}
    assert "recordUrl" in setup.retail.calls[call_id]
    assert setup.mini.received == 0
    held = store.get_one("realtime", call_id, "minicrm")
    assert held is not None and held["state"] == store.PENDING and held.get(store.RECORDING_WAIT) is True
    early = play(setup.retail.calls[call_id]["recordUrl"])
    assert early["statusCode"] == 404 and early["headers"]["Retry-After"] == "10"
    assert json.loads(early["body"]) == {"error": "Recording not stored yet", "retry": True}
    # The worker stores the file: the link plays, and MiniCRM's delivery alone is queued.
    recording = {"key": f"realtime/{call_id}/recording.mp3", "size": 2000, "content_type": "audio/mpeg"}
    calls.update_call("realtime", call_id, Update().set(recording_state="stored", recording=recording))
    handoff.recording_settled("realtime", call_id, stored=True)
    handoff.recording_settled("realtime", call_id, stored=True)  # the worker's retry wakes nothing more
    woken = queued_delivery_messages()
    assert [json.loads(m["Body"])["crm"] for m in woken] == ["minicrm"]
    assert delivery_handler.handler(sqs_event(woken, arn, "us-east-1"), None) == {"batchItemFailures": []}
    assert [r.get("ReferenceId") for _, r in setup.mini.all_records()] == [call_id]
    assert {d["state"] for d in store.of_call("realtime", call_id)} == {store.DELIVERED}
    late = play(setup.retail.calls[call_id]["recordUrl"])
    assert late["statusCode"] == 302 and late["headers"]["Location"]
    assert setup.retail.received[call_id] == 1 and setup.mini.received == 1


def test_a_call_held_for_its_recording_goes_without_it_once_it_is_given_up(setup: Crms, now: list[datetime]) -> None:
    """A recording the worker gives up: MiniCRM's held delivery goes at once, without a
    `ReferenceId` MiniCRM would download nothing from."""
    from callbridge.store import calls
    from callbridge.store.updates import Update

    call_id = recording_not_stored_yet("realtime", 6)
    arn = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
    assert delivery_handler.handler(sqs_event(queued_delivery_messages(), arn, "us-east-1"), None) == {
        "batchItemFailures": []
    }
    assert setup.mini.received == 0 and setup.retail.received[call_id] == 1
    calls.update_call("realtime", call_id, Update().set(recording_state="failed", recording_error="gone"))
    handoff.recording_settled("realtime", call_id, stored=False)
    woken = queued_delivery_messages()
    assert [json.loads(m["Body"])["crm"] for m in woken] == ["minicrm"]
    assert delivery_handler.handler(sqs_event(woken, arn, "us-east-1"), None) == {"batchItemFailures": []}
    records = [r for _, r in setup.mini.all_records()]
    assert len(records) == 1 and "ReferenceId" not in records[0]
    assert {d["state"] for d in store.of_call("realtime", call_id)} == {store.DELIVERED}


def test_a_recording_stored_while_its_call_was_being_held_wakes_it(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held delivery the drain finds due (its wake was lost) with the recording still being
    fetched is held again. The race: the recording worker stores the file and finds nothing held
    while the drain, which read the call before that, holds it again. The drain reads the call once
    it is held, sees the recording stored and queues the delivery itself."""
    from callbridge.store import calls
    from callbridge.store.updates import Update

    call_id = recording_not_stored_yet("realtime", 15)
    assert store.wake_for_recording("realtime", call_id, "minicrm")  # a wake whose message was lost
    queued_delivery_messages()  # retailCRM's, sent by the queue: not what this test is about
    now[0] += timedelta(seconds=settings.get_settings().delivery_realtime_grace_s + 1)
    real_reschedule = store.reschedule

    def stored_meanwhile(*args: Any, **kwargs: Any) -> bool:
        assert kwargs.get("recording_wait") is True
        recording = {"key": f"realtime/{call_id}/recording.mp3", "size": 2000, "content_type": "audio/mpeg"}
        calls.update_call("realtime", call_id, Update().set(recording_state="stored", recording=recording))
        handoff.recording_settled("realtime", call_id, stored=True)  # nothing held yet: nothing woken
        assert queued_delivery_messages() == []
        return real_reschedule(*args, **kwargs)

    monkeypatch.setattr(store, "reschedule", stored_meanwhile)
    report = engine.drain(accounts=["realtime"])
    assert report.deferred == 1 and setup.mini.received == 0
    monkeypatch.setattr(store, "reschedule", real_reschedule)
    woken = queued_delivery_messages()
    assert [json.loads(m["Body"])["crm"] for m in woken] == ["minicrm"]
    arn = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
    assert delivery_handler.handler(sqs_event(woken, arn, "us-east-1"), None) == {"batchItemFailures": []}
    assert [r.get("ReferenceId") for _, r in setup.mini.all_records()] == [call_id]


def test_a_batch_call_still_waits_for_its_recording(setup: Crms, now: list[datetime]) -> None:
    recording_not_stored_yet("batch", 12)
    report = engine.drain(accounts=["batch"])
    assert report.deferred == 2 and report.delivered == 0 and setup.retail.requests == 0


def test_one_history_webhook_reads_its_account_once(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The account travels with the call: the webhook's handler reads it, and the hand-off to
    delivery uses what it read. Counted through the handler: every look-up (cache or store) and
    every read of the account item, in a cold container and then a warm one."""
    import cloudpbx
    from callbridge.store.accounts import get_account_item
    from tests.support import form, http_event, seed_history

    lookups: list[str] = []
    reads: list[str] = []
    real_lookup, real_read = accounts.lookup, get_account_item

    def counted_lookup(account_id: str, **kwargs: Any) -> accounts.Lookup:
        lookups.append(account_id)
        return real_lookup(account_id, **kwargs)

    def counted_read(account_id: str, **kwargs: Any) -> dict[str, Any] | None:
        reads.append(account_id)
        return real_read(account_id, **kwargs)

    monkeypatch.setattr(accounts, "lookup", counted_lookup)
    monkeypatch.setattr(accounts, "get_account_item", counted_read)
    accounts.clear_account_cache()  # a cold container
    for n, reads_expected in ((1, 1), (2, 0)):  # then a warm one: the cache answers
        lookups.clear()
        reads.clear()
        fields = seed_history(callid=f"ONE-READ-{n}", crm_token="delivery-test-token-0001", link=None)
        event = http_event("/v1/realtime/cloudpbx", form(**fields), account="realtime")
        assert cloudpbx.handler(event, None)["statusCode"] == 200
        assert len(store.of_call("realtime", f"ONE-READ-{n}")) == 2  # handed on to both CRMs
        assert lookups == ["realtime"]
        assert len(reads) == reads_expected


def test_a_lost_realtime_message_is_sent_again_by_the_pbx_retry(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deliveries are created but queueing their message fails (503 to the PBX): the retry, a
    repeat for both the store and the deliveries, must still queue them, or the call waits for the
    drain's grace period."""
    import cloudpbx
    from tests.support import form, http_event, seed_history

    real = handoff.send_messages
    failures = [1]

    def sqs_down_once(account: str, call_id: str, crms: list[str]) -> None:
        if failures:
            failures.pop()
            raise RuntimeError("SQS unavailable")
        real(account, call_id, crms)

    monkeypatch.setattr(handoff, "send_messages", sqs_down_once)
    fields = seed_history(callid="RT-RETRY", crm_token="delivery-test-token-0001", link=None)
    event = http_event("/v1/realtime/cloudpbx", form(**fields), account="realtime")
    assert cloudpbx.handler(event, None)["statusCode"] == 503
    assert len(store.of_call("realtime", "RT-RETRY")) == 2 and queued_delivery_messages() == []
    assert cloudpbx.handler(event, None)["statusCode"] == 200  # the PBX sends it again
    messages = queued_delivery_messages()
    assert sorted(json.loads(m["Body"])["crm"] for m in messages) == ["minicrm", "retailcrm"]
    arn = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
    assert delivery_handler.handler(sqs_event(messages, arn, "us-east-1"), None) == {"batchItemFailures": []}
    assert setup.retail.received["RT-RETRY"] == 1
    assert cloudpbx.handler(event, None)["statusCode"] == 200  # once delivered, a repeat queues nothing
    assert queued_delivery_messages() == []


def test_a_realtime_delivery_that_failed_for_now_is_retried_from_the_queue(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(monkeypatch, DELIVERY_RETRY_BASE_SECONDS="1")
    ids = store_calls("realtime", 3)
    arn = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"
    setup.retail.down_status = 503
    first = queued_delivery_messages()
    assert delivery_handler.handler(sqs_event(first, arn, "us-east-1"), None) == {"batchItemFailures": []}
    assert setup.retail.calls == {} and setup.mini.received == expected_minicrm_records("realtime", ids)
    sqs, queue_url = aws.sqs(), settings.get_settings().delivery_queue_url
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesDelayed"] == str(len(ids))  # retailCRM's, backed off
    setup.retail.down_status = None
    deadline = time.monotonic() + 10  # the backoff is 1 s: the delayed messages become visible
    while time.monotonic() < deadline:
        counts = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        if counts["Attributes"]["ApproximateNumberOfMessages"] == str(len(ids)):
            break
        time.sleep(0.05)
    retries = queued_delivery_messages()
    assert sorted(json.loads(m["Body"])["call_id"] for m in retries) == ids
    assert all(json.loads(m["Body"])["crm"] == "retailcrm" for m in retries)
    assert delivery_handler.handler(sqs_event(retries, arn, "us-east-1"), None) == {"batchItemFailures": []}
    assert_exactly_once(setup, ids)
    assert queued_delivery_messages() == []  # delivered: nothing more queued


def test_telediscount_calls_open_and_close_the_responsible_managers_card(setup: Crms, now: list[datetime]) -> None:
    """telediscount's `incoming` names no ringing user; a known contact's call goes to its responsible
    manager, whose retailCRM card opens, and `finished` closes it. A PBX retry opens no second card."""
    import pbx_webhook as telediscount
    from callbridge.store import contacts

    pbx = {"kind": "telediscount", "api_key": "td-api-key-000000001", "webhook_secret": "td-webhook-secret-0001"}
    olga = {"pbx_user": "olga", "sip_account": "SIP/0000000672", "extension": "672", "retailcrm_user_id": 7}
    apply_account(account_config("tele", setup, "realtime", pbx=pbx, more_users=[olga]))
    accounts.clear_account_cache()
    contacts.put_contact("tele", "k1", "Horns and Hooves", ["+79039998877"], "olga")

    def webhook(kind: str, **fields: str) -> int:
        path = f"/v1/tele/telediscount/td-webhook-secret-0001/{kind}"
        event = {"rawPath": path, "pathParameters": {"account": "tele", "secret": "td-webhook-secret-0001"},
                 "queryStringParameters": {"num_a": "79039998877", "num_m": "79037778899", "api_call_id": "TD-1",
                                           "setup_time": "1700000000", **fields}}  # fmt: skip
        return int(telediscount.handler(event, None)["statusCode"])

    work = work_queues

    assert webhook("incoming") == 200
    assert webhook("incoming") == 200  # a PBX retry: no second card
    work()  # while it rings (a ringing card taken after the call ended is not shown)
    assert webhook("finished", num_b="SIP/0000000672", connection_time="12", waiting_time="5") == 200
    assert webhook("incoming", num_a="79035550000", api_call_id="TD-2") == 200  # unknown caller: no card
    work()
    assert setup.retail.errors == []
    cards = [e for e in setup.retail.events if e["callExternalId"] == "TD-1"]
    assert [(e["type"], e["codes"], e["userIds"], e.get("hangupStatus")) for e in cards] == [
        ("in", ["672"], [7], None),
        ("hangup", ["672"], [7], "answered"),
    ]
    assert cards[0]["phone"] == "+79039998877" and cards[0]["externalPhone"] == "+79037778899"
    assert not [e for e in setup.retail.events if e["callExternalId"] == "TD-2"]


@pytest.mark.parametrize("number", ["", "anonymous"])
def test_a_call_without_a_number_is_stored_and_not_applicable_where_a_crm_needs_one(
    setup: Crms, now: list[datetime], number: str
) -> None:
    """A withheld caller id (`phone=` or `phone=anonymous`) is a call: stored, flagged `no_number`,
    and settled `not_applicable` for CRMs that file calls by number - not sent, not parked, no alarm."""
    import cloudpbx
    from callbridge.store import calls
    from tests.support import form, http_event, seed_history

    for call_id, phone in (("NONUM-1", number), ("NUM-1", "79101234567")):
        fields = seed_history(callid=call_id, phone=phone, crm_token="delivery-test-token-0001", link=None)
        event = http_event("/v1/batch/cloudpbx", form(**fields), account="batch")
        assert cloudpbx.handler(event, None)["statusCode"] == 200
    stored = calls.get_call("batch", "NONUM-1")
    assert stored is not None and stored["final"] is True and stored["phone"] == number
    assert "no_number" in stored["flags"] and stored["user"] == "andy"

    report = engine.drain(accounts=["batch"])
    assert (report.delivered, report.not_applicable, report.rejected, report.failed) == (2, 2, 0, 0)
    assert report.metrics()["DeliveriesParked"] == 0 and report.metrics()["DeliveriesRejected"] == 0
    assert setup.mini.errors == [] and setup.retail.errors == []
    assert setup.mini.received == 1 and set(setup.retail.calls) == {"NUM-1"}
    states = {d["crm"]: d for d in store.of_call("batch", "NONUM-1")}
    assert {crm: d["state"] for crm, d in states.items()} == {
        "minicrm": "not_applicable",
        "retailcrm": "not_applicable",
    }
    assert all("no client number" in d["reason"] and "dlv_pk" not in d for d in states.values())
    assert store.list_parked("batch", "minicrm", store.REJECTED) == []
    assert store.list_parked("batch", "minicrm", store.FAILED) == []
    # Settled: a later drain finds nothing to do.
    assert engine.drain(accounts=["batch"]).claimed == 0


def test_retailcrm_is_told_the_ring_time_where_the_pbx_reports_it(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """telediscount reports a call's ring time (`waiting_time`, or a get_calls record's
    `num_b_waiting_time`): retailCRM gets it as `durationWaiting`. A call whose PBX reported none
    (here a finished webhook without it, and a Cloud PBX call) is uploaded without the field, not as 0."""
    import cloudpbx
    import pbx_webhook as telediscount
    from tests.support import form, http_event, seed_history

    use_settings(monkeypatch, DELIVERY_RECORDING_WAIT_SECONDS="0")  # no waiting for the recordings
    pbx = {"kind": "telediscount", "api_key": "td-api-key-000000002", "webhook_secret": "td-webhook-secret-0002"}
    olga = {"pbx_user": "olga", "sip_account": "SIP/0000000672", "extension": "672", "retailcrm_user_id": 7}
    apply_account(account_config("teleb", setup, "batch", pbx=pbx, more_users=[olga]))
    accounts.clear_account_cache()

    def finished(call_id: str, **fields: str) -> None:
        event = {"rawPath": "/v1/teleb/telediscount/td-webhook-secret-0002/finished",
                 "pathParameters": {"account": "teleb", "secret": "td-webhook-secret-0002"},
                 "queryStringParameters": {"num_a": "79039998877", "num_m": "79037778899", "api_call_id": call_id,
                                           "setup_time": "1700000000", "num_b": "SIP/0000000672", **fields}}  # fmt: skip
        assert telediscount.handler(event, None)["statusCode"] == 200

    finished("TD-W1", connection_time="12", waiting_time="5")
    finished("TD-W2", connection_time="0", waiting_time="31")  # missed: rang 31 s
    finished("TD-W3", connection_time="7")  # no ring time reported
    history = seed_history(callid="CP-W1", phone="79101234567", crm_token="delivery-test-token-0001", link=None)
    assert (
        cloudpbx.handler(http_event("/v1/batch/cloudpbx", form(**history), account="batch"), None)["statusCode"] == 200
    )

    engine.drain(accounts=["teleb", "batch"])
    assert setup.retail.errors == []
    uploaded = setup.retail.calls
    assert (uploaded["TD-W1"]["durationWaiting"], uploaded["TD-W1"]["duration"]) == (5, 12)
    assert (uploaded["TD-W2"]["durationWaiting"], uploaded["TD-W2"]["result"]) == (31, "no answer")
    assert "durationWaiting" not in uploaded["TD-W3"] and "durationWaiting" not in uploaded["CP-W1"]


def test_minicrm_gets_national_numbers_by_default(setup: Crms, now: list[datetime]) -> None:
    """MiniCRM's documentation sends `Number` national (`0620123456`): by default a number of the
    account's country goes national with its trunk prefix, a foreign one stays E.164 (its national
    digits would lose the country); `number_format: e164` sends every number in E.164."""
    mini = {"kind": "minicrm", "base_url": setup.mini_url, "api_key": MINI_KEY, "mode": "batch"}
    config = {
        "account": "hu", "timezone": "Europe/Budapest", "phone_region": "HU",
        "pbx": {"kind": "cloudpbx", "crm_tokens": ["delivery-test-token-0002"]},
        "crms": [{**mini, "default_user_extension": "001"},
                 {**mini, "name": "mini-e164", "number_format": "e164", "default_user_extension": "002"}],
    }  # fmt: skip
    apply_account(AccountConfig.model_validate(trusting_fakes(config)))
    accounts.clear_account_cache()
    phones = {"HU-1": "+36201234567", "HU-2": "+79101234567", "HU-3": "12345"}  # home, foreign, not E.164
    items = [
        {"pk": f"CALL#hu#{call_id}", "sk": "CALL", "account": "hu", "call_id": call_id, "source": "cloudpbx",
         "final": True, "phone": phone, "direction": "in", "outcome": "answered", "user": "ghost", "duration": 30,
         "started_at": clock.iso(T0), "finalized_at": clock.iso(T0)}
        for call_id, phone in phones.items()
    ]  # fmt: skip
    for item in items:
        aws.dynamodb().put_item(TableName=settings.get_settings().calls_table, Item=to_item(item))
        handoff.call_final(accounts.get_account("hu"), str(item["call_id"]))

    engine.drain(accounts=["hu"])
    assert setup.mini.errors == []
    numbers = {ext: sorted(r["Number"] for r in records) for ext, records in setup.mini.records.items()}
    assert numbers == {
        "001": ["+79101234567", "06201234567", "12345"],
        "002": ["+36201234567", "+79101234567", "12345"],
    }


def test_click_to_call_opens_an_out_card_and_the_telediscount_finish_closes_it(
    setup: Crms, now: list[datetime]
) -> None:
    """A manager clicks a number in retailCRM; telediscount accepts the `outcome` with a call id and
    rings him first: his card shows the client (`out`), and the call's `finished` webhook closes it
    (`hangup`) under the same id. A call dialled on a phone (no click-to-call) opens no card."""
    import pbx_webhook as telediscount
    from callbridge.features import clicktocall
    from tests.fakes.base import serve as serve_pbx
    from tests.fakes.telediscount import FakeTelediscount

    fake = FakeTelediscount(api_key="td-api-key-000000003", outcome_call_id="TD-OUT-1")
    with serve_pbx(fake) as base:
        pbx = {"kind": "telediscount", "api_url": f"{base}/api.php/telephony", "api_key": "td-api-key-000000003",
               "webhook_secret": "td-webhook-secret-0003"}  # fmt: skip
        olga = {"pbx_user": "olga", "sip_account": "SIP/00000000672", "extension": "672", "retailcrm_user_id": 7}
        apply_account(account_config("teleo", setup, "realtime", pbx=pbx, more_users=[olga]))
        accounts.clear_account_cache()
        secrets.reset_secret_cache()
        query = {"clientId": "retail-client-id-0001", "code": "672", "userId": "7", "phone": " 79039998877"}
        placed = clicktocall.crm_make_call("teleo", "retailcrm", query)
    assert (placed.pbx_call_id, placed.pbx_user) == ("TD-OUT-1", "olga")
    assert fake.requests[-1][1]["num_b"] == "79039998877" and fake.errors == []
    work = work_queues

    work()  # the card shows while the call goes on (one taken after the call ended is not shown)

    def finished(call_id: str) -> None:
        event = {"rawPath": "/v1/teleo/telediscount/td-webhook-secret-0003/finished",
                 "pathParameters": {"account": "teleo", "secret": "td-webhook-secret-0003"},
                 "queryStringParameters": {"num_a": "SIP/0000000672", "num_m": "79037778899", "num_b": "79039998877",
                                           "api_call_id": call_id, "setup_time": "1700000000",
                                           "connection_time": "40", "waiting_time": "6"}}  # fmt: skip
        assert telediscount.handler(event, None)["statusCode"] == 200

    finished("TD-OUT-1")
    finished("TD-OUT-2")  # dialled on the phone: no card was opened, none is closed
    work()
    assert setup.retail.errors == []
    cards = [(e["type"], e["codes"], e["userIds"], e["phone"], e.get("hangupStatus"), e["callExternalId"])
             for e in setup.retail.events]  # fmt: skip
    assert cards == [
        ("out", ["672"], [7], "+79039998877", None, "TD-OUT-1"),
        ("hangup", ["672"], [7], "+79039998877", "answered", "TD-OUT-1"),
    ]


def test_call_notes_reach_the_retailcrm_customer_with_their_author_and_time(setup: Crms, now: list[datetime]) -> None:
    """A ccrm.pl call's notes: retailCRM's upload has no place for them, its customer card has. Each
    note goes to the customers the caller's number finds, with its author and time (local time of
    the account), once even when sent again; a number no customer has holds no note, and that is no
    failure. MiniCRM's call log has no place for notes: only the call goes there."""
    from callbridge.core.model import Call

    retail = {"kind": "retailcrm", "base_url": setup.retail_url, "api_key": RETAIL_KEY, "mode": "batch",
              "client_id": "retail-client-id-0002", "default_user_id": 99}  # fmt: skip
    mini = {"kind": "minicrm", "base_url": setup.mini_url, "api_key": MINI_KEY, "mode": "batch",
            "default_user_extension": "001"}  # fmt: skip
    config = {"account": "notes", "timezone": "Europe/Warsaw", "phone_region": "PL",
              "pbx": {"kind": "ccrm", "base_url": "https://notes.ccrm.pl", "api_key": "ccrm-key-notes-0001"},
              "crms": [retail, mini]}  # fmt: skip
    apply_account(AccountConfig.model_validate(trusting_fakes(config)))
    accounts.clear_account_cache()
    secrets.reset_secret_cache()
    setup.retail.customers[501] = {"id": 501, "firstName": "Ola", "phones": [{"number": "+48333333333"}]}
    notes = [
        {"text": "Notatka do tego połączenia", "author": "Jan Kowalski", "author_id": "a26b956b",
         "created_at": "2022-12-29T12:13:35Z"},
        {"text": "Oddzwonić jutro"},
    ]  # fmt: skip
    items = [
        {"pk": f"CALL#notes#{call_id}", "sk": "CALL", "account": "notes", "call_id": call_id, "source": "ccrm",
         "final": True, "phone": phone, "direction": "in", "outcome": "answered", "duration": 368,
         "started_at": "2022-12-29T10:24:57Z", "finalized_at": clock.iso(T0), "notes": notes}
        for call_id, phone in (("N-1", "+48333333333"), ("N-2", "+48555555555"))
    ]  # fmt: skip
    for item in items:
        aws.dynamodb().put_item(TableName=settings.get_settings().calls_table, Item=to_item(item))
        handoff.call_final(accounts.get_account("notes"), str(item["call_id"]))

    report = engine.drain(accounts=["notes"])
    assert (report.delivered, report.rejected, report.failed) == (4, 0, 0)
    assert setup.retail.errors == [] and setup.mini.errors == [] and set(setup.retail.calls) == {"N-1", "N-2"}
    assert [(n["customer"], n["text"]) for n in setup.retail.notes] == [
        ({"id": 501}, "Notatka do tego połączenia\n\n— Jan Kowalski, 2022-12-29 13:13 (note on call N-1, 1)"),
        ({"id": 501}, "Oddzwonić jutro\n\n— (note on call N-1, 2)"),
    ]
    assert all(set(r) <= {"Number", "Duration", "CallType", "Date", "ReferenceId"} for _, r in setup.mini.all_records())

    # Sent again (a retried delivery): the notes are recognised, not written twice.
    account = accounts.get_account("notes")
    crm = account.settings.crms[0]
    connector = engine.default_connector(crm, account)
    try:
        built = connector.records(Call.from_item(items[0]), False)
        notes_records = [r for r in built.records if r.group != ""]
        assert [r.kind for r in connector.send(notes_records)] == ["ok", "ok"]
    finally:
        connector.close()
    assert len(setup.retail.notes) == 2


@pytest.mark.parametrize(("retention_days", "link_days"), [(None, 365), (30, 30), (3650, 3650)])
def test_a_crms_recording_link_lives_as_long_as_the_accounts_recordings(
    setup: Crms, now: list[datetime], retention_days: int | None, link_days: int
) -> None:
    """A retailCRM recordUrl is signed for the account's retention tier, else the stack's
    RecordingRetentionDays (365 by default): it plays as long as the recording is kept."""
    from urllib.parse import parse_qs, urlsplit

    config = account_config("kept", setup, "batch")
    recordings = config.recordings.model_copy(update={"retention_days": retention_days})
    apply_account(config.model_copy(update={"recordings": recordings}))
    accounts.clear_account_cache()
    store_calls("kept", 1)
    engine.drain(accounts=["kept"])
    link = setup.retail.calls["c00000"]["recordUrl"]
    expires = int(parse_qs(urlsplit(link).query)["exp"][0])
    assert abs(expires - time.time() - link_days * 86400) < 120
