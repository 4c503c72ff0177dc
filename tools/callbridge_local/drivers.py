"""Event sources that are not HTTP: SQS queues and schedules.

The queue driver does what Lambda's SQS event source mapping does: long-polls the queue, hands the
batch to the function and deletes what was processed. Messages it does not delete reappear after
the queue's VisibilityTimeout, and the queue's RedrivePolicy moves them to the dead-letter queue
after maxReceiveCount receives, as on AWS (moto implements the redrive).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from callbridge_local.handlers import LocalFunction
from callbridge_local.template import ScheduleEvent, SqsEvent

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

# ReceiveMessage returns at most 10 messages; like Lambda, a BatchSize over 10 is assembled from
# several receives, but only from what is visible now: a batching window would only add latency.
SQS_MAX_RECEIVE = 10
POLL_WAIT_SECONDS = 1
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.IGNORECASE)
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


# -- SQS ---------------------------------------------------------------------------------------


def _message_attributes(raw: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API attribute values, in the camelCase shape of the Lambda SQS event."""
    converted: dict[str, Any] = {}
    for name, value in raw.items():
        item: dict[str, Any] = {
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [base64.b64encode(v).decode("ascii") for v in value.get("BinaryListValues", [])],
            "dataType": value.get("DataType", "String"),
        }
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        converted[name] = item
    return converted


def sqs_event(messages: Iterable[MessageTypeDef], queue_arn: str, region: str) -> dict[str, Any]:
    records = []
    for message in messages:
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes", {})),
            "messageAttributes": _message_attributes(message.get("MessageAttributes", {})),
            "md5OfBody": message.get("MD5OfBody", ""),
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        record.update({"eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region})
        records.append(record)
    return {"Records": records}


def failed_message_ids(result: Any, message_ids: list[str]) -> set[str]:
    """Which messages Lambda would leave on the queue after a ReportBatchItemFailures response."""
    if result is None or result == {}:
        return set()
    if not isinstance(result, dict):
        log.warning("invalid batch response %r: the whole batch is retried", result)
        return set(message_ids)
    failures = result.get("batchItemFailures")
    if failures is None or failures == []:
        return set()
    if not isinstance(failures, list):
        log.warning("invalid batchItemFailures response %r: the whole batch is retried", result)
        return set(message_ids)
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in message_ids:
            # Lambda treats an unknown, empty or missing identifier as a failure of the whole batch.
            log.warning("invalid batch item failure %r: the whole batch is retried", failure)
            return set(message_ids)
        failed.add(identifier)
    return failed


@dataclass
class QueueStats:
    batches: int = 0
    received: int = 0
    deleted: int = 0
    failed: int = 0
    invocation_errors: int = 0


@dataclass
class QueueSource:
    function: LocalFunction
    event: SqsEvent
    queue_url: str
    queue_arn: str

    @property
    def label(self) -> str:
        return f"{self.function.logical_id}.{self.event.name}"


class QueuePoller:
    """One SQS event source mapping: receive a batch, invoke, delete what succeeded."""

    def __init__(self, source: QueueSource, client: SQSClient, region: str) -> None:
        self.source = source
        self.client = client
        self.region = region
        self.stats = QueueStats()
        self._stats_lock = threading.Lock()

    def snapshot(self) -> QueueStats:
        with self._stats_lock:
            return QueueStats(**asdict(self.stats))

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    def pending(self, *, delayed: bool = True) -> int:
        """Messages visible, in flight or (with `delayed`) delayed: what remains before the queue is
        empty."""
        names: list[QueueAttributeNameType] = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
        ]
        if delayed:
            names.append("ApproximateNumberOfMessagesDelayed")
        attributes = self.client.get_queue_attributes(
            QueueUrl=self.source.queue_url,
            AttributeNames=names,
        )["Attributes"]
        return sum(int(attributes.get(name, "0")) for name in names)

    def poll_once(self, wait_seconds: int = POLL_WAIT_SECONDS) -> int:
        """Receive and process one batch; returns the number of messages received."""
        wanted = max(1, self.source.event.batch_size)
        messages: list[MessageTypeDef] = []
        while len(messages) < wanted:
            response = self.client.receive_message(
                QueueUrl=self.source.queue_url,
                MaxNumberOfMessages=min(wanted - len(messages), SQS_MAX_RECEIVE),
                WaitTimeSeconds=0 if messages else wait_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            messages.extend(received)
            if len(received) < SQS_MAX_RECEIVE:
                break  # what is visible now: no batching window to wait out locally
        if not messages:
            return 0
        self._process(messages)
        return len(messages)

    def _process(self, messages: list[MessageTypeDef]) -> None:
        source = self.source
        ids = [m["MessageId"] for m in messages]
        self._count(batches=1, received=len(messages))
        try:
            result = source.function.invoke(sqs_event(messages, source.queue_arn, self.region))
        except Exception:
            # Nothing is deleted: the messages come back after the visibility timeout.
            log.exception("%s failed on %d message(s); they stay on the queue", source.label, len(messages))
            self._count(failed=len(messages), invocation_errors=1)
            return
        failed = failed_message_ids(result, ids) if source.event.reports_batch_item_failures else set()
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), SQS_MAX_RECEIVE):
            chunk = done[start : start + SQS_MAX_RECEIVE]
            response = self.client.delete_message_batch(
                QueueUrl=source.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                log.warning("%s: could not delete a message: %s", source.label, failure.get("Message"))
        self._count(deleted=len(done), failed=len(failed))
        log.info("%s: %d message(s), %d processed, %d left for retry", source.label, len(ids), len(done), len(failed))


@dataclass
class DrainReport:
    drained: bool
    elapsed_seconds: float
    functions: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "drained": self.drained,
            "elapsedSeconds": round(self.elapsed_seconds, 3),
            "functions": self.functions,
        }


class QueueDriver:
    """A thread per queue event source, plus an on-demand drain for tests."""

    def __init__(self, pollers: Iterable[QueuePoller]) -> None:
        self.pollers = list(pollers)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for poller in self.pollers:
            thread = threading.Thread(target=self._run, args=(poller,), name=f"sqs-{poller.source.label}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, poller: QueuePoller) -> None:
        while not self._stop.is_set():
            try:
                poller.poll_once(POLL_WAIT_SECONDS)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("%s: polling failed; retrying", poller.source.label)
                self._stop.wait(1.0)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def drain(self, timeout: float, *, delayed: bool = True) -> DrainReport:
        """Process until every queue is empty (visible, in flight and delayed), or ``timeout`` passes.
        Without `delayed`, a message still waiting out its delay (a settle that waits for a quiet
        time of minutes) does not count: the test wants what is due now, not what is due later.

        Empty twice in a row, because a handler may send to a queue checked before it finished.
        """
        started = time.monotonic()
        before = {p.source.label: p.snapshot() for p in self.pollers}
        clean_passes = 0
        drained = False
        while True:
            for poller in self.pollers:
                try:
                    poller.poll_once(wait_seconds=0)
                except Exception:
                    log.exception("%s: polling failed during drain", poller.source.label)
            remaining = {p.source.label: p.pending(delayed=delayed) for p in self.pollers}
            clean_passes = clean_passes + 1 if not any(remaining.values()) else 0
            if clean_passes >= 2:
                drained = True
                break
            if time.monotonic() - started >= timeout:
                break
            time.sleep(0.05 if clean_passes else 0.2)
        report = DrainReport(drained=drained, elapsed_seconds=time.monotonic() - started)
        for poller in self.pollers:
            label = poller.source.label
            now, then = poller.snapshot(), before[label]
            report.functions[label] = {
                "received": now.received - then.received,
                "processed": now.deleted - then.deleted,
                "failed": now.failed - then.failed,
                "remaining": remaining[label],
            }
        return report


# -- Schedules ---------------------------------------------------------------------------------


def rate_seconds(expression: str) -> int | None:
    """The period of a rate(...) expression in seconds; None for cron(...) and at(...)."""
    match = _RATE.match(expression.strip())
    if not match:
        return None
    unit = match.group(2).lower().rstrip("s")
    return int(match.group(1)) * _UNIT_SECONDS[unit]


def scheduled_event(
    function: LocalFunction,
    schedule: ScheduleEvent,
    *,
    region: str,
    account_id: str,
    stack_name: str,
    now: datetime | None = None,
) -> Any:
    """What an EventBridge rule sends the function: a Scheduled Event."""
    name = f"{stack_name}-{function.logical_id}{schedule.name}"
    resource = f"arn:aws:events:{region}:{account_id}:rule/{name}"
    now = now or datetime.now(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [resource],
        "detail": {},
    }


@dataclass(frozen=True)
class ScheduleSource:
    function: LocalFunction
    schedule: ScheduleEvent

    @property
    def label(self) -> str:
        return f"{self.function.logical_id}.{self.schedule.name}"


class ScheduleDriver:
    """Runs rate(...) schedules on a timer; cron(...) and at(...) only run on request."""

    def __init__(
        self,
        sources: Iterable[ScheduleSource],
        event_for: Callable[[ScheduleSource], Any],
        *,
        period_of: Callable[[str], float | None] = rate_seconds,
    ) -> None:
        self.sources = list(sources)
        self._event_for = event_for
        self._period_of = period_of
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for source in self.sources:
            manual = f"POST /_local/schedules/{source.function.logical_id}"
            period = self._period_of(source.schedule.expression)
            if period is None:
                log.info("%s (%s) runs only via %s", source.label, source.schedule.expression, manual)
                continue
            thread = threading.Thread(
                target=self._run, args=(source, period), name=f"schedule-{source.label}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
            log.info("%s runs every %g s (%s)", source.label, period, source.schedule.expression)

    def _run(self, source: ScheduleSource, period: float) -> None:
        # EventBridge first fires one period after the rule is created, not at once.
        while not self._stop.wait(period):
            try:
                source.function.invoke(self._event_for(source))
                log.info("%s ran", source.label)
            except Exception:
                log.exception("%s failed", source.label)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()
