"""Lambda's SQS delivery semantics in the running runtime, with its own pollers in the background:
batches of the mapping's BatchSize, several at once up to ScalingConfig.MaximumConcurrency, and a
partial batch failure redelivered after the queue's visibility timeout, then redriven to the DLQ."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callbridge_local.provision import AwsTarget
from callbridge_local.runtime import LocalRuntime

from .conftest import local_runtime, write_project

# Each concurrent batch runs in an instance of its own (the module imported again), so the handlers
# record in a file that every instance appends to, not in module state.
HANDLERS = """
import json
import os
import time


def _record(**fields):
    with open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as out:
        out.write(json.dumps(fields) + "\\n")


def slow(event, context):
    started = time.monotonic()
    # Long enough that batches waiting on the queue overlap if the poller runs them in parallel.
    time.sleep(0.6)
    _record(kind="slow", bodies=[r["body"] for r in event["Records"]], start=started, end=time.monotonic())
    return {}


def picky(event, context):
    failed = []
    for record in event["Records"]:
        count = int(record["attributes"]["ApproximateReceiveCount"])
        first_received = int(record["attributes"]["ApproximateFirstReceiveTimestamp"]) / 1000
        _record(kind="picky", body=record["body"], receive_count=count, at=time.time(), first_received=first_received)
        if record["body"].startswith("fail"):
            failed.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failed}
"""

TEMPLATE = """
Globals:
  Function:
    CodeUri: src/
    Runtime: python3.12
    Timeout: 10
    Environment: {Variables: {RECORD_FILE: "{record}"}}
Resources:
  BusyQueue:
    Type: AWS::SQS::Queue
    Properties: {VisibilityTimeout: 30}
  PickyQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 2
      RedrivePolicy: {deadLetterTargetArn: !GetAtt PickyDLQ.Arn, maxReceiveCount: 2}
  PickyDLQ:
    Type: AWS::SQS::Queue
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.slow
      Events:
        Busy:
          Type: SQS
          Properties:
            Queue: !GetAtt BusyQueue.Arn
            BatchSize: 4
            ScalingConfig: {MaximumConcurrency: 3}
  PickyFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.picky
      Events:
        Picky:
          Type: SQS
          Properties:
            Queue: !GetAtt PickyQueue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
"""


@pytest.fixture(scope="module")
def record_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records") / "records.jsonl"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, record_file: Path) -> Iterator[LocalRuntime]:
    template = TEMPLATE.replace("{record}", str(record_file))
    project = write_project(tmp_path_factory.mktemp("semantics"), template, HANDLERS)
    with local_runtime(project.template) as running:
        yield running


def records(path: Path, kind: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [r for r in (json.loads(line) for line in lines if line) if r["kind"] == kind]


def send(runtime: LocalRuntime, queue_id: str, bodies: list[str]) -> str:
    assert runtime.stack is not None
    sqs = AwsTarget(runtime.aws_endpoint).client("sqs")
    url = runtime.stack.physical_name(queue_id)
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    return url


def wait_until(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(condition())


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_waiting_messages_run_in_parallel_batches_of_the_batch_size_up_to_the_maximum_concurrency(runtime, record_file):
    bodies = [f"m{n:02d}" for n in range(24)]
    send(runtime, "BusyQueue", bodies)
    assert wait_until(lambda: sum(len(r["bodies"]) for r in records(record_file, "slow")) >= 24, timeout=30)
    batches = records(record_file, "slow")
    assert sorted(b for r in batches for b in r["bodies"]) == bodies  # each message once
    # BatchSize 4: never more in one invocation, and full batches while messages wait.
    assert max(len(r["bodies"]) for r in batches) == 4
    assert sum(1 for r in batches if len(r["bodies"]) == 4) >= 4
    # MaximumConcurrency 3: batches overlap, three at most.
    assert most_at_once([(r["start"], r["end"]) for r in batches]) == 3
    assert runtime.queue_driver is not None
    [busy] = [p for p in runtime.queue_driver.pollers if p.source.label == "SlowFunctionBusy"]
    assert busy.snapshot().peak_in_flight == 3


def test_a_partial_failure_comes_back_after_the_visibility_timeout_then_goes_to_the_dlq(runtime, record_file):
    send(runtime, "PickyQueue", ["ok-1", "fail-1", "ok-2"])
    assert runtime.stack is not None
    dlq_url = runtime.stack.physical_name("PickyDLQ")
    sqs = AwsTarget(runtime.aws_endpoint).client("sqs")
    moved: list[Any] = []

    def redriven() -> bool:
        moved.extend(sqs.receive_message(QueueUrl=dlq_url, WaitTimeSeconds=0).get("Messages", []))
        return bool(moved)

    assert wait_until(redriven, timeout=20)
    deliveries = records(record_file, "picky")
    # The messages that succeeded were delivered once and deleted; the failed one twice
    # (maxReceiveCount 2), the second time only after the 2 s visibility timeout.
    assert sorted((d["body"], d["receive_count"]) for d in deliveries) == [
        ("fail-1", 1),
        ("fail-1", 2),
        ("ok-1", 1),
        ("ok-2", 1),
    ]
    # Measured from the first receive, which starts the visibility timeout: the first invocation
    # itself may start late (a cold start under load), which says nothing about the redelivery.
    again = next(d for d in deliveries if d["body"] == "fail-1" and d["receive_count"] == 2)
    assert again["at"] - again["first_received"] >= 1.9, again
    assert [m["Body"] for m in moved] == ["fail-1"]
    url = runtime.stack.physical_name("PickyQueue")
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "0",
        "0",
    )
