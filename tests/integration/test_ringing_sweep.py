"""The maximum ringing age (docs/missed-calls.md, "A call whose stop was lost"): a call whose phone
never reported its stop is settled as missed by the scheduled ringing sweep, through the webhook
handler, the sweep's handler, the realtime delivery worker and a fake retailCRM on 127.0.0.1,
against moto. The clock is moved, not waited for; no delayed message stands for a ringing call.
A call that gets its history, or a new event, while the sweep settles it is recorded once and
delivered once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

import delivery as delivery_handler
import ringing_sweep
from callbridge.core import accounts
from callbridge.core.config import AccountConfig
from callbridge.features.admin import apply_account
from callbridge.features.delivery import engine
from callbridge.infra import aws, clock, secrets, settings
from callbridge.infra.http import RetryPolicy
from callbridge.store import calls, open_calls
from callbridge_local.drivers import sqs_event
from tests.fakes.crm_server import serve
from tests.fakes.retailcrm import FakeRetailCrm
from tests.integration.test_cloudpbx_webhooks import post
from tests.support import seed_event, seed_history, trusting_fakes

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
RETAIL_KEY = "ringing-retail-key-0001"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
MAX_AGE = 900
SCHEDULED = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}


@pytest.fixture
def now(cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    current = [T0]
    clock.set_clock(lambda: current[0])
    try:
        yield current
    finally:
        clock.set_clock(None)


@pytest.fixture
def retail(cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRetailCrm]:
    """The demo account without its PBX API (no reconciliation can recover a call) and with a
    realtime retailCRM: a call the sweep settles reaches it through the delivery queue."""
    monkeypatch.setattr(engine, "HTTP_RETRY", RetryPolicy(attempts=2, backoff_initial_s=0, backoff_max_s=0, jitter_s=0))
    for name, value in {
        "MAX_RINGING_SECONDS": str(MAX_AGE),
        "MISSED_CALL_SETTLE_SECONDS": "0",
        "PUBLIC_BASE_URL": "https://bridge.example.com",
    }.items():
        monkeypatch.setenv(name, value)
    settings.reset_settings()
    fake = FakeRetailCrm(RETAIL_KEY)
    with serve(fake) as url:
        config = yaml.safe_load((ROOT / "accounts" / "demo.yaml").read_text(encoding="utf-8"))
        config["pbx"] = {"kind": "cloudpbx", "crm_tokens": config["pbx"]["crm_tokens"]}
        config["users"] = [{**u, "retailcrm_user_id": n + 1} for n, u in enumerate(config["users"])]
        config["crms"] = [
            {"kind": "retailcrm", "base_url": url, "api_key": RETAIL_KEY, "client_id": "ring-client-0001"}
            | {"mode": "realtime", "call_events": False}
        ]
        apply_account(AccountConfig.model_validate(trusting_fakes(config)))
        accounts.clear_account_cache()
        secrets.reset_secret_cache()
        yield fake


def ring(call_id: str, *events: tuple[str, str]) -> None:
    for kind, user in events:
        assert post(seed_event(kind, user, callid=call_id))[0] == 200


def store_history(fields: dict[str, Any]) -> None:
    assert post(fields)[0] == 200


def sweep() -> dict[str, int]:
    report: dict[str, Any] = ringing_sweep.handler(dict(SCHEDULED, time=clock.iso(clock.now())), None)
    assert report["max_ringing_seconds"] == MAX_AGE
    found: dict[str, int] = report["accounts"].get("demo", {})
    return found


def deliver() -> int:
    """Plays Lambda's SQS event source for the realtime delivery worker; the messages handled."""
    sqs = aws.sqs()
    queue_url = settings.get_settings().delivery_queue_url
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    handled = 0
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        assert delivery_handler.handler(sqs_event(messages, arn, "us-east-1"), None) == {"batchItemFailures": []}
        for m in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
        handled += len(messages)
    return handled


def settle_messages(cloud: dict[str, str]) -> int:
    """Messages in the settle queue, visible or delayed."""
    found = aws.sqs().get_queue_attributes(
        QueueUrl=cloud["SETTLE_QUEUE_URL"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    return int(found["ApproximateNumberOfMessages"]) + int(found["ApproximateNumberOfMessagesDelayed"])


def watched() -> list[str]:
    return [e.call_id for e in open_calls.open_between("demo", open_calls.RINGING, open_calls.EARLIEST, "9999")]


def test_a_call_whose_stop_was_lost_is_missed_after_the_maximum_age_and_delivered_once(
    cloud: dict[str, str], now: list[datetime], retail: FakeRetailCrm
) -> None:
    ring("lost-stop", ("INCOMING", "andy"))  # its CANCELLED never comes
    assert settle_messages(cloud) == 0  # a ringing call costs no delayed message
    assert watched() == ["lost-stop"]

    now[0] = T0 + timedelta(seconds=MAX_AGE - 1)
    assert sweep() == {}  # younger than the maximum age: not even read
    assert (calls.get_call("demo", "lost-stop") or {}).get("final") is None

    now[0] = T0 + timedelta(seconds=MAX_AGE + 30)
    assert sweep() == {"missed": 1}
    call = calls.get_call("demo", "lost-stop") or {}
    assert (call["final"], call["outcome"], call["missed_reason"]) == (True, "missed", "unknown")
    assert call.get("ringing") is None and call["users_rang"] == {"andy"}
    assert call["started_at"] == clock.iso(T0)
    assert watched() == []  # forgotten: the next sweep reads nothing
    assert sweep() == {}

    assert deliver() == 1
    assert retail.errors == [] and retail.received == {"lost-stop": 1}
    sent = retail.calls["lost-stop"]
    assert (sent["type"], sent["result"]) == ("in", "no answer"), sent  # retailCRM's word for a missed call

    # The lost stop and the history arrive after all: the call is corrected in place, nothing is
    # sent again (the CRM keeps what it got, as for a call recorded from its events).
    now[0] += timedelta(minutes=5)
    ring("lost-stop", ("CANCELLED", "andy"))
    assert post(seed_history(callid="lost-stop", status="Missed", duration="0", link=None))[0] == 200
    assert sweep() == {}
    deliver()
    assert retail.received == {"lost-stop": 1}


def test_a_call_still_alive_is_not_settled_until_its_events_stop(
    cloud: dict[str, str], now: list[datetime], retail: FakeRetailCrm
) -> None:
    """The age counts from the last event: a queue that rings one phone after another for longer
    than the maximum age is alive; once its events stop for the maximum age it is settled."""
    ring("queue", ("INCOMING", "andy"))
    now[0] = T0 + timedelta(seconds=MAX_AGE - 100)
    ring("queue", ("CANCELLED", "andy"), ("INCOMING", "daria"))  # daria's stop is lost
    now[0] = T0 + timedelta(seconds=MAX_AGE + 100)
    assert sweep() == {"ringing": 1}
    assert watched() == ["queue"]  # kept for the next run
    now[0] = T0 + timedelta(seconds=2 * MAX_AGE)
    assert sweep() == {"missed": 1}
    deliver()
    assert retail.received == {"queue": 1}


def during_the_sweep(monkeypatch: pytest.MonkeyPatch, call_id: str, action: Callable[[], None]) -> Callable[[], None]:
    """Make `action` happen right after the sweep read `call_id` and before it writes: the race of
    a settle with a webhook, played in its worst order. Returns a check that it happened."""
    read = calls.get_call
    happened: list[bool] = []

    def get_call(account: str, wanted: str) -> dict[str, Any] | None:
        found = read(account, wanted)
        if wanted == call_id and not happened:
            happened.append(True)
            action()
        return found

    monkeypatch.setattr(calls, "get_call", get_call)

    def check() -> None:
        monkeypatch.setattr(calls, "get_call", read)
        assert happened == [True]

    return check


def test_a_history_arriving_during_the_sweep_is_the_one_final_call(
    cloud: dict[str, str], now: list[datetime], retail: FakeRetailCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring("raced", ("INCOMING", "andy"))
    now[0] = T0 + timedelta(seconds=MAX_AGE + 60)
    history = seed_history(callid="raced", duration="42", link="")
    check = during_the_sweep(monkeypatch, "raced", lambda: store_history(history))
    assert sweep() == {"final": 1}  # the history won: the sweep wrote nothing
    check()
    call = calls.get_call("demo", "raced") or {}
    assert (call["outcome"], call["duration"], call.get("missed_reason")) == ("answered", 42, None)
    assert watched() == []
    assert deliver() == 1
    assert retail.received == {"raced": 1} and retail.calls["raced"]["result"] == "answered"


def test_an_event_arriving_during_the_sweep_keeps_the_call_alive(
    cloud: dict[str, str], now: list[datetime], retail: FakeRetailCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring("picked-up", ("INCOMING", "andy"))
    now[0] = T0 + timedelta(seconds=MAX_AGE + 60)
    check = during_the_sweep(monkeypatch, "picked-up", lambda: ring("picked-up", ("ACCEPTED", "andy")))
    assert sweep() == {"answered": 1}  # the answer came after the call was read: not missed
    check()
    call = calls.get_call("demo", "picked-up") or {}
    assert not call.get("final") and call["accepted_by"] == "andy"
    assert watched() == []  # its ringing is over; its end and history decide the rest
    assert deliver() == 0 and retail.received == {}


def test_a_ring_arriving_during_the_sweep_keeps_the_call_watched(
    cloud: dict[str, str], now: list[datetime], retail: FakeRetailCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring("rings-on", ("INCOMING", "andy"))
    now[0] = T0 + timedelta(seconds=MAX_AGE + 60)
    check = during_the_sweep(monkeypatch, "rings-on", lambda: ring("rings-on", ("INCOMING", "daria")))
    assert sweep() == {"changed": 1}
    check()
    assert watched() == ["rings-on"]  # still ringing: the next sweep looks again
    now[0] += timedelta(seconds=MAX_AGE)
    assert sweep() == {"missed": 1}
    assert deliver() == 1 and retail.received == {"rings-on": 1}


def test_a_missed_call_whose_settle_message_was_lost_is_settled_by_the_sweep(
    cloud: dict[str, str], now: list[datetime], retail: FakeRetailCrm
) -> None:
    """Its phones stopped, but its settle message went to the dead-letter queue: the call is still
    watched, and the sweep records it as the settle would have (reason `no_answer`)."""
    ring("dead-letter", ("INCOMING", "andy"), ("CANCELLED", "andy"))
    assert settle_messages(cloud) == 1
    aws.sqs().purge_queue(QueueUrl=cloud["SETTLE_QUEUE_URL"])
    now[0] = T0 + timedelta(seconds=MAX_AGE + 1)
    assert sweep() == {"missed": 1}
    call = calls.get_call("demo", "dead-letter") or {}
    assert (call["final"], call["outcome"], call["missed_reason"]) == (True, "missed", "no_answer")
    assert deliver() == 1 and retail.received == {"dead-letter": 1}
