"""A webhook answers within its Lambda timeout however DynamoDB behaves: with a throttling or slow
table it answers the retryable 503 before the timeout (infra/deadline.py), never a Lambda timeout
the PBX cannot read; the PBX's retry is then stored once.

The handlers run in process with the Lambda context of the local runtime (its remaining time), a
3 s timeout instead of the template's 10 s so that the test stays cheap; the table is moto behind a
proxy on 127.0.0.1 that throttles or holds the writes (tests/integration/slow_store.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

import history as history_fn
from callbridge.core import accounts
from callbridge.infra import aws, deadline, secrets, settings
from callbridge.store import calls
from callbridge_local.handlers import LambdaContext
from tests.integration.slow_store import Fault, SlowStore, slow_store
from tests.support import form, http_event, seed_history

TIMEOUT_S = 3.0
# A slow table holds a write longer than the whole timeout: only a cut read timeout answers in time.
HELD_S = 6.0
# A throttling table that takes this long to say so: botocore's four attempts alone (without their
# back-off) outlast the timeout.
THROTTLE_ANSWER_S = 0.8


def context() -> LambdaContext:
    return LambdaContext(
        function_name="HistoryFunction",
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:HistoryFunction",
        memory_limit_in_mb=256,
        timeout_seconds=TIMEOUT_S,
        region="us-east-1",
    )


@pytest.fixture
def store(cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowStore]:
    """The functions' AWS endpoint is the proxy from here on (new clients, no cached account)."""
    with slow_store(cloud["AWS_ENDPOINT_URL"]) as (endpoint, control):
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        aws.reset_clients()
        secrets.reset_secret_cache()
        accounts.clear_account_cache()
        yield control
        control.heal()
    aws.reset_clients()


def timed(handler: Any, event: dict[str, Any]) -> tuple[int, float]:
    started = time.monotonic()
    answer = handler(event, context())
    return answer["statusCode"], time.monotonic() - started


@pytest.mark.parametrize(("fault", "delay"), [("throttled", THROTTLE_ANSWER_S), ("slow", HELD_S)])
def test_a_history_answers_503_within_its_timeout_and_its_retry_is_stored_once(
    store: SlowStore, fault: Fault, delay: float
) -> None:
    call_id = f"DEADLINE-{fault}"
    event = http_event("/v1/demo/cloudpbx/history", form(**seed_history(callid=call_id)))
    store.set_fault(fault, delay)

    status, took = timed(history_fn.handler, event)

    assert store.writes_faulted >= 1  # the store was in trouble when the webhook came
    assert took < TIMEOUT_S, f"answered after {took:.2f} s, past its {TIMEOUT_S} s timeout"
    assert status == 503, "a webhook whose store did not answer in time is answered retryable"
    # The slow table's held write lands now, after the webhook was answered 503.
    store.heal()

    status, took = timed(history_fn.handler, event)  # the PBX's retry

    assert status == 200
    call = calls.get_call("demo", call_id) or {}
    assert (call.get("final"), call.get("outcome")) == (True, "answered")
    assert len(calls.timeline("demo", call_id)) == 1, "the retry of a webhook is stored once"


def test_near_the_deadline_an_error_botocore_would_not_retry_reaches_the_caller_as_it_is(store: SlowStore) -> None:
    """The deadline ends only what a retry would prolong: a refused condition (the store's answer
    to a repeated write, store/calls.py) is still the store's answer, however little time is left."""
    table = settings.get_settings().calls_table
    item = {"pk": {"S": "DEADLINE#cond"}, "sk": {"S": "x"}}
    client = aws.dynamodb()
    client.put_item(TableName=table, Item=item)
    with deadline.deadline_in(0.5), pytest.raises(ClientError) as refused:
        client.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(pk)")
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    with deadline.deadline_in(0.0), pytest.raises(deadline.DeadlineExceeded):
        client.put_item(TableName=table, Item=item)
    assert store.writes_faulted == 0
