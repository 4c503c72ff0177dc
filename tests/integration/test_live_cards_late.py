"""Live call cards are best-effort and useful for seconds (docs/delivery.md, "Live call cards"):
through the card worker (LiveCardFunction) against moto and the fake retailCRM of test_delivery.py,
a card that failed is never retried (its message is not handed back to SQS, whose redelivery would
show it minutes late), a stale card is not sent (its call ended, or a newer card of the call and
user replaced it), the cards of different calls go out at once, and no card ever waits in front of a
final call: cards have a queue of their own."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

import cloudpbx
import delivery as delivery_handler
import live_cards
from callbridge.core import accounts, live
from callbridge.features.delivery import cards, engine
from callbridge.infra import clock
from callbridge_local.drivers import sqs_event
from tests.integration import test_delivery as suite
from tests.integration.test_delivery import Crms, queued_card_messages, queued_delivery_messages
from tests.support import form, http_event, seed_event, seed_history

pytestmark = pytest.mark.timeout(120)
# The delivery suite's fixtures: its fake CRMs, frozen clock and two accounts (batch, realtime).
crms, now, setup = suite.crms, suite.now, suite.setup
CARD_ARN = "arn:aws:sqs:us-east-1:123456789012:LiveCardQueue"
DELIVERY_ARN = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"


def post(kind: str, call_id: str, user: str = "andy") -> None:
    fields = seed_event(kind, user, callid=call_id, crm_token="delivery-test-token-0001", diversion="74951112233")
    event = http_event("/v1/realtime/cloudpbx", form(**fields), account="realtime")
    assert cloudpbx.handler(event, None)["statusCode"] == 200


def work(messages: list[Any]) -> dict[str, Any]:
    result: dict[str, Any] = live_cards.handler(sqs_event(messages, CARD_ARN, "us-east-1"), None)
    return result


def slow_events(setup: Crms, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """retailCRM takes `seconds` to answer each call event (its uploads answer at once)."""
    real = setup.retail.handle

    def handle(method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Any:
        if path == "/api/v5/telephony/call/event":
            time.sleep(seconds)
        return real(method, path, query, headers, body)

    monkeypatch.setattr(setup.retail, "handle", handle)


def card(call_id: str, stage: live.Stage, users: tuple[str, ...], at: datetime) -> str:
    """A queued card of a call we hold no state of (a click-to-call's placeholder rings as long as
    its cards say): only the batch tells whether it is stale."""
    account = accounts.get_account("realtime")
    event = live.event(account, stage, call_id, "+79101234567", users, direction="in", at=at)
    return json.dumps(live.message("realtime", "retailcrm", event))


def test_cards_have_a_queue_of_their_own(setup: Crms, now: list[datetime]) -> None:
    post("INCOMING", "CARD-0")
    assert queued_delivery_messages() == []
    (message,) = queued_card_messages()
    assert json.loads(message["Body"])["kind"] == live.KIND


def test_a_failed_card_is_not_handed_back_for_a_late_retry(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    post("INCOMING", "CARD-1")
    messages = queued_card_messages()
    assert messages

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("SSM unreachable")

    monkeypatch.setattr(cards, "with_secrets", unreachable)
    assert work(messages) == {"batchItemFailures": []}
    report = cards.show_messages(m["Body"] for m in messages)
    assert report.failed == len(messages)
    assert report.metrics()["LiveCardsFailed"] == len(messages)
    assert setup.retail.events == []


def test_a_ringing_card_of_a_call_that_ended_is_not_shown(setup: Crms, now: list[datetime]) -> None:
    post("INCOMING", "CARD-2")
    post("COMPLETED", "CARD-2")  # the worker comes after the call ended (a queue backlog)
    report = cards.show_messages(m["Body"] for m in queued_card_messages())
    assert report.late == 1
    assert [e["type"] for e in setup.retail.events] == ["hangup"]  # the end is still told
    # A ringing card taken while the call rings is shown.
    post("INCOMING", "CARD-3")
    assert work(queued_card_messages()) == {"batchItemFailures": []}
    assert [e["type"] for e in setup.retail.events] == ["hangup", "in"]


def test_a_card_a_newer_one_of_the_same_call_and_user_replaces_is_not_sent(setup: Crms, now: list[datetime]) -> None:
    t0 = now[0]
    batch = [
        card("CLICK-1", "ringing", ("andy",), t0 + timedelta(seconds=2)),  # the newest of andy's
        card("CLICK-1", "ringing", ("andy",), t0),  # older, and queued after it: replaced
        card("CLICK-1", "ringing", ("daria",), t0 + timedelta(seconds=1)),  # another user's: shown
        card("CLICK-2", "ringing", ("andy",), t0),
        card("CLICK-2", "ended", ("andy",), t0 + timedelta(seconds=3)),  # rang and ended: the end only
    ]
    report = cards.show_messages(batch)
    assert (report.late, report.sent, report.failed) == (2, 3, 0)
    shown = [(e["callExternalId"], e["type"], e["codes"]) for e in setup.retail.events]
    assert sorted(shown) == [("CLICK-1", "in", ["101"]), ("CLICK-1", "in", ["102"]), ("CLICK-2", "hangup", ["101"])]
    assert setup.retail.errors == []


def test_the_cards_of_different_calls_go_out_at_once(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight calls ring at once and retailCRM takes 0.5 s per event: sent one after another their
    cards would take 4 s; the card worker sends them side by side."""
    slow_events(setup, monkeypatch, 0.5)
    for n in range(8):
        post("INCOMING", f"BUSY-{n}")
    messages = queued_card_messages()
    assert len(messages) == 8
    started = time.monotonic()
    assert work(messages) == {"batchItemFailures": []}
    elapsed = time.monotonic() - started
    assert len(setup.retail.events) == 8
    assert elapsed < 2.5, f"8 cards took {elapsed:.1f} s"


def test_a_final_call_never_waits_behind_cards(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy minute: five calls ring, are answered and end, each with its cards, and retailCRM is
    slow to take a card (1 s). The delivery worker's batch holds the calls alone: they reach both
    CRMs at once, whatever the cards are doing."""
    slow_events(setup, monkeypatch, 1.0)
    for n in range(5):
        call_id = f"RUSH-{n}"
        for kind in ("INCOMING", "ACCEPTED", "COMPLETED"):
            post(kind, call_id)
        fields = seed_history(callid=call_id, crm_token="delivery-test-token-0001", link=None)
        assert (
            cloudpbx.handler(http_event("/v1/realtime/cloudpbx", form(**fields), account="realtime"), None)[
                "statusCode"
            ]
            == 200
        )
    messages = queued_delivery_messages()
    assert {json.loads(m["Body"]).get("kind") for m in messages} == {None}  # calls only
    started = time.monotonic()
    result = delivery_handler.handler(sqs_event(messages, DELIVERY_ARN, "us-east-1"), None)
    elapsed = time.monotonic() - started
    assert result == {"batchItemFailures": []}
    assert set(setup.retail.calls) == {f"RUSH-{n}" for n in range(5)}
    assert setup.retail.events == []  # no card was in the way
    assert elapsed < 3.0, f"the calls took {elapsed:.1f} s"
    # The cards go their own way: the ringing ones are stale by now, the ends are told.
    report = cards.show_messages(m["Body"] for m in queued_card_messages())
    assert report.sent == 5 and {e["type"] for e in setup.retail.events} == {"hangup"}


def test_a_card_left_on_the_delivery_queue_still_shows_after_the_calls(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A card queued before cards had a queue of their own is shown by the delivery worker, after
    the calls of its batch."""
    order: list[str] = []
    real_process, real_show = engine.process, cards.show_messages

    def process(*args: Any, **kwargs: Any) -> engine.Report:
        order.append("calls")
        return real_process(*args, **kwargs)

    def show_messages(bodies: Any) -> cards.CardReport:
        order.append("cards")
        return real_show(bodies)

    monkeypatch.setattr(engine, "process", process)
    monkeypatch.setattr(cards, "show_messages", show_messages)
    old_card = card("OLD-1", "ringing", ("andy",), clock.now())
    suite.store_calls("realtime", 1)
    calls = [(m["MessageId"], m["Body"]) for m in queued_delivery_messages()]
    report, failed = engine.deliver_messages([("card-1", old_card), *calls])
    assert failed == [] and report.delivered == 2
    assert order[-1] == "cards" and [e["callExternalId"] for e in setup.retail.events] == ["OLD-1"]


def test_without_a_card_queue_cards_share_the_delivery_queue(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stack deployed before the card queue existed: its functions have no LIVE_CARD_QUEUE_URL."""
    suite.use_settings(monkeypatch, LIVE_CARD_QUEUE_URL="")
    post("INCOMING", "CARD-9")
    messages = queued_delivery_messages()
    assert [json.loads(m["Body"])["kind"] for m in messages] == [live.KIND]
    _, failed = engine.deliver_messages([(m["MessageId"], m["Body"]) for m in messages])
    assert failed == [] and [e["type"] for e in setup.retail.events] == ["in"]
