"""drivers.py and the /_local/ endpoints: SQS event source mapping semantics and schedules."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from callbridge_local.drivers import (
    QueueDriver,
    QueuePoller,
    ScheduleDriver,
    ScheduleSource,
    failed_message_ids,
    rate_seconds,
    sqs_event,
)
from callbridge_local.handlers import FunctionRegistry
from callbridge_local.provision import AwsTarget
from callbridge_local.runtime import LocalRuntime

from .conftest import local_runtime, write_project

HANDLERS = """
import json

SEEN = []


def settle(event, context):
    # Fails the messages whose body says so, through ReportBatchItemFailures.
    SEEN.append([r["body"] for r in event["Records"]])
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event["Records"] if r["body"] == "fail"]}


def always_fails(event, context):
    SEEN.append([r["body"] for r in event["Records"]])
    raise RuntimeError("poison")


def tick(event, context):
    SEEN.append(event)
    return {"got": event, "remaining_ok": context.get_remaining_time_in_millis() > 0}


def tick_fails(event, context):
    raise ValueError("no tick today")
"""

TEMPLATE = """
Globals:
  Function:
    CodeUri: src/
    Runtime: python3.12
Resources:
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      # Longer than the mapping's batching window, as AWS advises: a message must not reappear while
      # its batch is still being assembled.
      VisibilityTimeout: 3
      RedrivePolicy: {deadLetterTargetArn: !GetAtt WorkDLQ.Arn, maxReceiveCount: 2}
  WorkDLQ:
    Type: AWS::SQS::Queue
  PoisonQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy: {deadLetterTargetArn: !GetAtt PoisonDLQ.Arn, maxReceiveCount: 2}
  PoisonDLQ:
    Type: AWS::SQS::Queue
  SettleFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.settle
      Environment: {Variables: {WORK_QUEUE_URL: !Ref WorkQueue}}
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 25
            MaximumBatchingWindowInSeconds: 1
            FunctionResponseTypes: [ReportBatchItemFailures]
  PoisonFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.always_fails
      Events:
        Poison: {Type: SQS, Properties: {Queue: !GetAtt PoisonQueue.Arn, BatchSize: 5}}
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.tick
      Events:
        Nightly: {Type: Schedule, Properties: {Schedule: "cron(0 3 * * ? *)"}}
  OftenTickFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.tick
      Events:
        Often: {Type: Schedule, Properties: {Schedule: rate(5 minutes), Description: every five minutes}}
  FailingTickFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.tick_fails
      Events:
        Often: {Type: Schedule, Properties: {Schedule: rate(1 minute)}}
"""


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    project = write_project(tmp_path_factory.mktemp("drivers"), TEMPLATE, HANDLERS)
    with local_runtime(project.template) as running:
        # The background pollers would race the tests' own polls; tests drive the queues themselves.
        queue_driver(running).stop()
        yield running


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runtime.base_url, timeout=30) as http:
        yield http


@pytest.fixture
def sqs(runtime: LocalRuntime):
    return AwsTarget(runtime.aws_endpoint).client("sqs")


def queue_driver(runtime: LocalRuntime) -> QueueDriver:
    assert runtime.queue_driver is not None
    return runtime.queue_driver


def functions(runtime: LocalRuntime) -> FunctionRegistry:
    assert runtime.gateway is not None
    return runtime.gateway.functions


def poller(runtime: LocalRuntime, label: str) -> QueuePoller:
    [found] = [p for p in queue_driver(runtime).pollers if p.source.label == label]
    return found


def handler_module(runtime: LocalRuntime) -> Any:
    return sys.modules[functions(runtime)["SettleFunction"].spec.module_name]


def queue_counts(sqs, url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_batch_item_failures_leave_only_the_failed_message_on_the_queue(runtime, sqs):
    work = poller(runtime, "SettleFunctionWork")
    for body in ("ok-1", "fail", "ok-2"):
        sqs.send_message(QueueUrl=work.source.queue_url, MessageBody=body)
    before = work.snapshot()
    assert work.poll_once(wait_seconds=1) == 3
    after = work.snapshot()
    assert (after.deleted - before.deleted, after.failed - before.failed) == (2, 1)
    # The failed one is in flight until its visibility timeout, then visible again; the rest are gone.
    assert sum(queue_counts(sqs, work.source.queue_url)) == 1
    time.sleep(3.2)
    message = sqs.receive_message(QueueUrl=work.source.queue_url, WaitTimeSeconds=1)["Messages"][0]
    assert message["Body"] == "fail"
    sqs.delete_message(QueueUrl=work.source.queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_a_batch_size_over_ten_is_assembled_from_several_receives(runtime, sqs):
    work = poller(runtime, "SettleFunctionWork")
    bodies = [f"big-{n:02d}" for n in range(30)]
    for start in range(0, 30, 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
        sqs.send_message_batch(QueueUrl=work.source.queue_url, Entries=entries)
    seen = handler_module(runtime).SEEN
    assert work.poll_once(wait_seconds=1) == 25  # one invocation of BatchSize messages, as Lambda does
    assert len(seen[-1]) == 25
    assert work.poll_once(wait_seconds=1) == 5  # what is left when the batching window (1 s) has passed
    assert sorted(seen[-2] + seen[-1]) == bodies


def test_a_handler_that_always_raises_sends_the_message_to_the_dlq(runtime, sqs):
    poison = poller(runtime, "PoisonFunctionPoison")
    dlq_url = runtime.stack.physical_name("PoisonDLQ")
    sqs.send_message(QueueUrl=poison.source.queue_url, MessageBody="bad news")
    invocations_before = poison.snapshot().invocation_errors
    deadline = time.monotonic() + 15
    moved: list[Any] = []
    while time.monotonic() < deadline and not moved:
        poison.poll_once(wait_seconds=1)
        moved = sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=0, AttributeNames=["All"]).get("Messages", [])
    assert [m["Body"] for m in moved] == ["bad news"]
    # maxReceiveCount is 2: two failed invocations, then the redrive on the third receive.
    assert poison.snapshot().invocation_errors - invocations_before == 2
    assert queue_counts(sqs, poison.source.queue_url) == (0, 0)


def test_drain_processes_every_queue_until_empty(runtime, client, sqs):
    work = poller(runtime, "SettleFunctionWork")
    for i in range(12):
        sqs.send_message(QueueUrl=work.source.queue_url, MessageBody=f"m{i}")
    response = client.post("/_local/queues/drain", params={"timeout": 20})
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["drained"] is True
    assert report["functions"]["SettleFunctionWork"] == {"received": 12, "processed": 12, "failed": 0, "remaining": 0}
    assert report["functions"]["PoisonFunctionPoison"]["remaining"] == 0


def test_drain_that_cannot_finish_says_so(runtime, client, sqs):
    work = poller(runtime, "SettleFunctionWork")
    sqs.send_message(QueueUrl=work.source.queue_url, MessageBody="fail")
    response = client.post("/_local/queues/drain?timeout=0.5")
    assert response.status_code == 504
    assert response.json()["functions"]["SettleFunctionWork"]["remaining"] == 1
    # Clean up: the DLQ takes it after the second failed receive.
    assert client.post("/_local/queues/drain?timeout=20").status_code == 200
    assert client.post("/_local/queues/drain?timeout=abc").status_code == 400


def test_schedule_endpoint_runs_the_scheduled_event_once(runtime, client):
    response = client.post("/_local/schedules/TickFunction")
    assert response.status_code == 200, response.text
    result = response.json()
    event = result["got"]
    assert result["remaining_ok"] is True
    assert (event["detail-type"], event["source"], event["detail"], event["version"]) == (
        "Scheduled Event",
        "aws.events",
        {},
        "0",
    )
    assert (event["account"], event["region"]) == ("123456789012", "us-east-1")
    assert event["resources"] == [
        f"arn:aws:events:us-east-1:123456789012:rule/{runtime.stack.stack_name}-TickFunctionNightly"
    ]
    assert event["time"].endswith("Z")


def test_schedule_endpoint_errors(client):
    failing = client.post("/_local/schedules/FailingTickFunction")
    assert (failing.status_code, failing.json()) == (500, {"errorType": "ValueError", "errorMessage": "no tick today"})
    assert client.post("/_local/schedules/NoSuchFunction").status_code == 404
    assert client.post("/_local/schedules/SettleFunction").status_code == 404
    assert client.get("/_local/schedules/TickFunction").status_code == 405


def test_schedule_driver_runs_rate_schedules_and_stops_promptly(runtime):
    function = functions(runtime)["OftenTickFunction"]
    seen = handler_module(runtime).SEEN
    seen.clear()
    assert runtime.schedule_driver is not None
    by_function = {s.function.logical_id: s for s in runtime.schedule_driver.sources}
    source = ScheduleSource(function, by_function["OftenTickFunction"].schedule)
    cron = by_function["TickFunction"]
    driver = ScheduleDriver(
        [source, cron],
        lambda s: {"job": s.label},
        period_of=lambda e: 0.1 if e.startswith("rate") else None,
    )
    driver.start()
    try:
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        started = time.monotonic()
        driver.stop()
        assert time.monotonic() - started < 1
    assert seen[:2] == [{"job": "OftenTickFunctionOften"}] * 2
    assert not [t for t in threading.enumerate() if t.name.startswith("schedule-")]


def test_rate_expressions():
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds(" rate(2 Hours) ") == 7200
    assert rate_seconds("rate(1 day)") == 86400
    assert rate_seconds("cron(0 3 * * ? *)") is None
    assert rate_seconds("at(2030-01-01T00:00:00)") is None
    assert rate_seconds("rate(1 week)") is None


def test_batch_response_rules_follow_lambda():
    ids = ["a", "b"]
    assert failed_message_ids(None, ids) == set()
    assert failed_message_ids({}, ids) == set()
    assert failed_message_ids({"batchItemFailures": []}, ids) == set()
    assert failed_message_ids({"batchItemFailures": None}, ids) == set()
    assert failed_message_ids({"batchItemFailures": [{"itemIdentifier": "b"}]}, ids) == {"b"}
    # Anything malformed fails the whole batch, as Lambda does.
    for bad in (
        "ok",
        {"batchItemFailures": "b"},
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": "zzz"}]},
        {"batchItemFailures": [{"id": "a"}]},
    ):
        assert failed_message_ids(bad, ids) == {"a", "b"}


def test_sqs_event_shape():
    message: Any = {
        "MessageId": "m1",
        "ReceiptHandle": "rh",
        "MD5OfBody": "md5",
        "Body": "hello",
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1"},
        "MD5OfMessageAttributes": "md5a",
        "MessageAttributes": {
            "s": {"DataType": "String", "StringValue": "x"},
            "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    }
    [record] = sqs_event([message], "arn:aws:sqs:us-east-1:1:q", "us-east-1")["Records"]
    assert record == {
        "messageId": "m1",
        "receiptHandle": "rh",
        "body": "hello",
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1"},
        "messageAttributes": {
            "s": {"stringValue": "x", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
            "b": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
        },
        "md5OfBody": "md5",
        "md5OfMessageAttributes": "md5a",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
        "awsRegion": "us-east-1",
    }


def test_queue_driver_threads_poll_in_the_background_and_stop_promptly(runtime, sqs):
    work = poller(runtime, "SettleFunctionWork")
    driver = QueueDriver([work])
    driver.start()
    try:
        sqs.send_message(QueueUrl=work.source.queue_url, MessageBody="background")
        deadline = time.monotonic() + 10
        while sum(queue_counts(sqs, work.source.queue_url)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert queue_counts(sqs, work.source.queue_url) == (0, 0)
        assert ["background"] in handler_module(runtime).SEEN
    finally:
        started = time.monotonic()
        driver.stop()
        # A receive in flight waits at most WaitTimeSeconds (1 s).
        assert time.monotonic() - started < 2.5
    assert not [t for t in threading.enumerate() if t.name.startswith("sqs-")]
