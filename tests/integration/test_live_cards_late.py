"""Live call cards are best-effort and useful for seconds (docs/delivery.md, "Live call cards"):
through the realtime worker against moto and the fake retailCRM of test_delivery.py, a card that
failed is never retried (its message is not handed back to SQS, whose redelivery would show it
minutes late), and a ringing card whose call has ended by the time the worker takes it is not shown."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

import cloudpbx
import delivery as delivery_handler
from callbridge.features.delivery import engine
from callbridge.infra import aws, settings
from callbridge_local.drivers import sqs_event
from tests.integration import test_delivery as suite
from tests.integration.test_delivery import Crms, queued_delivery_messages
from tests.support import form, http_event, seed_event

pytestmark = pytest.mark.timeout(120)
# The delivery suite's fixtures: its fake CRMs, frozen clock and two accounts (batch, realtime).
crms, now, setup = suite.crms, suite.now, suite.setup


def post(kind: str, call_id: str, user: str = "andy") -> None:
    fields = seed_event(kind, user, callid=call_id, crm_token="delivery-test-token-0001", diversion="74951112233")
    event = http_event("/v1/realtime/cloudpbx", form(**fields), account="realtime")
    assert cloudpbx.handler(event, None)["statusCode"] == 200


def work(messages: list[Any]) -> dict[str, Any]:
    queue_url = settings.get_settings().delivery_queue_url
    arn = aws.sqs().get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    result: dict[str, Any] = delivery_handler.handler(sqs_event(messages, arn, "us-east-1"), None)
    return result


def test_a_failed_card_is_not_handed_back_for_a_late_retry(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    post("INCOMING", "CARD-1")
    messages = queued_delivery_messages()
    assert messages

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("SSM unreachable")

    monkeypatch.setattr(engine, "with_secrets", unreachable)
    assert work(messages) == {"batchItemFailures": []}
    report, failed = engine.deliver_messages([(m["MessageId"], m["Body"]) for m in messages])
    assert failed == [] and report.cards_failed == len(messages)
    assert report.metrics()["LiveCardsFailed"] == len(messages)
    assert setup.retail.events == []


def test_a_ringing_card_of_a_call_that_ended_is_not_shown(setup: Crms, now: list[datetime]) -> None:
    post("INCOMING", "CARD-2")
    post("COMPLETED", "CARD-2")  # the worker comes after the call ended (a queue backlog)
    messages = queued_delivery_messages()
    report, failed = engine.deliver_messages([(m["MessageId"], m["Body"]) for m in messages])
    assert failed == [] and report.cards_late == 1
    assert [e["type"] for e in setup.retail.events] == ["hangup"]  # the end is still told
    # A ringing card taken while the call rings is shown.
    post("INCOMING", "CARD-3")
    assert work(queued_delivery_messages()) == {"batchItemFailures": []}
    assert [e["type"] for e in setup.retail.events] == ["hangup", "in"]
