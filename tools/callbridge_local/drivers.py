"""Event sources that are not HTTP: SQS event-source mappings and schedules.

A queue poller does what Lambda's SQS event-source mapping does with the mapping's settings
(AWS::Lambda::EventSourceMapping): it long-polls the queue, assembles batches of up to BatchSize
messages, waiting up to MaximumBatchingWindowInSeconds for a batch to fill, and hands each batch to
the function; while messages wait, it goes on receiving, so that several batches run at once (each in
an instance of its own, handlers.py), up to ScalingConfig.MaximumConcurrency (Lambda's first five
concurrent batches when the mapping sets none). It deletes what was processed; with
ReportBatchItemFailures only the messages the function names as failed stay. Messages it does not
delete reappear after the queue's VisibilityTimeout, and the queue's RedrivePolicy moves them to the
dead-letter queue after maxReceiveCount receives, as on AWS (moto keeps the queue side).
"""

from __future__ import annotations

import base64
import json
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
from callbridge_local.template import EVENTS_RULE, TemplateError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

# ReceiveMessage returns at most 10 messages: a BatchSize over 10 is assembled from several receives.
SQS_MAX_RECEIVE = 10
POLL_WAIT_SECONDS = 1
# Lambda's SQS defaults and limits (AWS::Lambda::EventSourceMapping, standard queues).
SQS_DEFAULT_BATCH_SIZE = 10
SQS_MAX_BATCH_SIZE = 10000
SQS_MAX_BATCHING_WINDOW = 300
# Lambda starts an SQS mapping with five concurrent batches and adds more only after minutes of
# backlog; a mapping's MaximumConcurrency (2..1000) caps it.
SQS_DEFAULT_CONCURRENCY = 5
SQS_CONCURRENCY_RANGE = (2, 1000)
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$", re.IGNORECASE)
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def _number(properties: Mapping[str, Any], name: str, default: int, low: int, high: int, where: str) -> int:
    value = properties.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TemplateError(f"{where}: {name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not low <= number <= high:
        raise TemplateError(f"{where}: {name} must be within {low}..{high}, got {value!r}")
    return number


def _enabled(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


@dataclass(frozen=True)
class SqsMapping:
    """An SQS event-source mapping with its properties resolved."""

    name: str
    batch_size: int = SQS_DEFAULT_BATCH_SIZE
    batching_window: float = 0.0
    maximum_concurrency: int | None = None
    function_response_types: tuple[str, ...] = ()
    enabled: bool = True

    @classmethod
    def from_properties(cls, name: str, properties: Mapping[str, Any]) -> SqsMapping:
        """Checked as Lambda checks a mapping: an out-of-range value is refused, not clamped."""
        where = f"resource {name}"
        batch_size = _number(properties, "BatchSize", SQS_DEFAULT_BATCH_SIZE, 1, SQS_MAX_BATCH_SIZE, where)
        window = _number(properties, "MaximumBatchingWindowInSeconds", 0, 0, SQS_MAX_BATCHING_WINDOW, where)
        if batch_size > SQS_MAX_RECEIVE and window < 1:
            raise TemplateError(f"{where}: a BatchSize over 10 needs MaximumBatchingWindowInSeconds of at least 1")
        scaling = properties.get("ScalingConfig") or {}
        unknown = sorted(set(scaling) - {"MaximumConcurrency"})
        if unknown:
            raise TemplateError(f"{where}: ScalingConfig.{unknown[0]} is not supported by the local runtime")
        concurrency = None
        if "MaximumConcurrency" in scaling:
            concurrency = _number(scaling, "MaximumConcurrency", 0, *SQS_CONCURRENCY_RANGE, where)
        response_types = tuple(str(t) for t in properties.get("FunctionResponseTypes") or ())
        if set(response_types) - {"ReportBatchItemFailures"}:
            raise TemplateError(f"{where}: FunctionResponseTypes {list(response_types)} is not supported")
        return cls(
            name=name,
            batch_size=batch_size,
            batching_window=float(window),
            maximum_concurrency=concurrency,
            function_response_types=response_types,
            enabled=_enabled(properties.get("Enabled", True)),
        )

    @property
    def reports_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types

    @property
    def concurrency(self) -> int:
        return self.maximum_concurrency or SQS_DEFAULT_CONCURRENCY


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
    # Batches being processed now, and the most there have been at once.
    in_flight: int = 0
    peak_in_flight: int = 0


@dataclass
class QueueSource:
    function: LocalFunction
    mapping: SqsMapping
    queue_url: str
    queue_arn: str

    @property
    def label(self) -> str:
        """The mapping's logical id, as the drain report and the logs name it."""
        return self.mapping.name


class QueuePoller:
    """One SQS event-source mapping: assemble batches, invoke, delete what succeeded.

    ``max_batching_window`` caps the mapping's MaximumBatchingWindowInSeconds (a runtime option the
    tests use so that a batch does not wait seconds to fill); None waits it out as Lambda does.
    """

    def __init__(
        self, source: QueueSource, client: SQSClient, region: str, *, max_batching_window: float | None = None
    ) -> None:
        self.source = source
        self.client = client
        self.region = region
        self.stats = QueueStats()
        self._stats_lock = threading.Lock()
        window = source.mapping.batching_window
        self.batching_window = window if max_batching_window is None else min(window, max_batching_window)
        # One slot per batch that may run at once: a poller holds no messages it cannot start.
        self.slots = threading.BoundedSemaphore(source.mapping.concurrency)
        self._workers: list[threading.Thread] = []
        self._workers_lock = threading.Lock()

    def snapshot(self) -> QueueStats:
        with self._stats_lock:
            return QueueStats(**asdict(self.stats))

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)
            self.stats.peak_in_flight = max(self.stats.peak_in_flight, self.stats.in_flight)

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

    def _receive(self, count: int, wait_seconds: int) -> list[MessageTypeDef]:
        response = self.client.receive_message(
            QueueUrl=self.source.queue_url,
            MaxNumberOfMessages=min(count, SQS_MAX_RECEIVE),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def receive_batch(
        self, wait_seconds: int = POLL_WAIT_SECONDS, *, window: float | None = None, stop: threading.Event | None = None
    ) -> list[MessageTypeDef]:
        """One batch as Lambda assembles it: up to BatchSize messages, receiving more until the batch
        is full or the batching window, counted from the first message, has passed. Without a
        window the batch is what is visible now."""
        wanted = self.source.mapping.batch_size
        window = self.batching_window if window is None else window
        messages = self._receive(wanted, wait_seconds)
        if not messages:
            return []
        deadline = time.monotonic() + window
        while len(messages) < wanted and not (stop is not None and stop.is_set()):
            remaining = deadline - time.monotonic()
            if remaining <= 0 and window > 0:
                break
            # Long polls wait whole seconds: the window's last fraction is waited out in short steps.
            received = self._receive(wanted - len(messages), int(min(remaining, POLL_WAIT_SECONDS)))
            messages.extend(received)
            if window <= 0 and len(received) < SQS_MAX_RECEIVE:
                break
            if not received and remaining < 1:
                time.sleep(min(max(remaining, 0.0), 0.05))
        return messages

    def poll_once(self, wait_seconds: int = POLL_WAIT_SECONDS, *, window: float | None = None) -> int:
        """Receive one batch and process it in this thread; returns the number of messages received.
        It takes a concurrency slot like any batch, waiting for one if all are busy."""
        with self.slots:
            messages = self.receive_batch(wait_seconds, window=window)
            if messages:
                self._process(messages)
        return len(messages)

    def run(self, stop: threading.Event) -> None:
        """The mapping's poller: while a slot is free, receive a batch and start it in a thread of
        its own, then receive the next one at once, so that waiting messages run in parallel."""
        while not stop.is_set():
            if not self.slots.acquire(timeout=0.5):
                continue
            try:
                messages = self.receive_batch(POLL_WAIT_SECONDS, stop=stop)
            except BaseException:
                self.slots.release()
                raise
            if not messages:
                self.slots.release()
                continue
            worker = threading.Thread(
                target=self._process_and_release, args=(messages,), name=f"sqs-{self.source.label}-batch", daemon=True
            )
            with self._workers_lock:
                self._workers = [w for w in self._workers if w.is_alive()]
                self._workers.append(worker)
            worker.start()

    def _process_and_release(self, messages: list[MessageTypeDef]) -> None:
        try:
            self._process(messages)
        except Exception:
            log.exception("%s: a batch could not be processed", self.source.label)
        finally:
            self.slots.release()

    def join(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the batches in flight."""
        deadline = time.monotonic() + timeout
        with self._workers_lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def _process(self, messages: list[MessageTypeDef]) -> None:
        source = self.source
        ids = [m["MessageId"] for m in messages]
        self._count(batches=1, received=len(messages), in_flight=1)
        try:
            try:
                result = source.function.invoke(sqs_event(messages, source.queue_arn, self.region))
            except Exception:
                # Nothing is deleted: the messages come back after the visibility timeout.
                log.exception("%s failed on %d message(s); they stay on the queue", source.label, len(messages))
                self._count(failed=len(messages), invocation_errors=1)
                return
            failed = failed_message_ids(result, ids) if source.mapping.reports_batch_item_failures else set()
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
            log.info(
                "%s: %d message(s), %d processed, %d left for retry", source.label, len(ids), len(done), len(failed)
            )
        finally:
            self._count(in_flight=-1)


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
    """A poller thread per enabled event-source mapping, plus an on-demand drain for tests."""

    def __init__(self, pollers: Iterable[QueuePoller]) -> None:
        self.pollers = list(pollers)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for poller in self.pollers:
            if not poller.source.mapping.enabled:
                log.info("%s is disabled (Enabled: false): its queue is not polled", poller.source.label)
                continue
            thread = threading.Thread(target=self._run, args=(poller,), name=f"sqs-{poller.source.label}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self, poller: QueuePoller) -> None:
        while not self._stop.is_set():
            try:
                poller.run(self._stop)
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
        for poller in self.pollers:
            poller.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def drain(self, timeout: float, *, delayed: bool = True) -> DrainReport:
        """Process until every queue is empty (visible, in flight and delayed), or ``timeout`` passes.
        Without `delayed`, a message still waiting out its delay (a settle that waits for a quiet
        time of minutes) does not count: the test wants what is due now, not what is due later.

        Empty twice in a row, because a handler may send to a queue checked before it finished.
        """
        started = time.monotonic()
        # A disabled mapping consumes nothing on AWS either: its queue is not waited for.
        pollers = [p for p in self.pollers if p.source.mapping.enabled]
        before = {p.source.label: p.snapshot() for p in pollers}
        clean_passes = 0
        drained = False
        while True:
            for poller in pollers:
                try:
                    # What is visible now: a drain does not wait out batching windows.
                    poller.poll_once(wait_seconds=0, window=0)
                except Exception:
                    log.exception("%s: polling failed during drain", poller.source.label)
            remaining = {p.source.label: p.pending(delayed=delayed) for p in pollers}
            clean_passes = clean_passes + 1 if not any(remaining.values()) else 0
            if clean_passes >= 2:
                drained = True
                break
            if time.monotonic() - started >= timeout:
                break
            time.sleep(0.05 if clean_passes else 0.2)
        report = DrainReport(drained=drained, elapsed_seconds=time.monotonic() - started)
        for poller in pollers:
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


@dataclass(frozen=True)
class ScheduleEvent:
    """An AWS::Events::Rule or AWS::Scheduler::Schedule with its expression and state resolved."""

    name: str
    expression: str
    enabled: bool = True
    type: str = EVENTS_RULE
    # What EventBridge Scheduler sends: the target's Input, parsed ({} without one).
    payload: Any = None

    @classmethod
    def from_properties(cls, name: str, kind: str, expression: Any, state: Any, raw_input: Any) -> ScheduleEvent:
        if not isinstance(expression, str):
            raise TemplateError(f"resource {name}: ScheduleExpression must be a string, got {expression!r}")
        if str(state) not in ("ENABLED", "DISABLED"):
            raise TemplateError(f"resource {name}: State {state!r} is not supported (ENABLED or DISABLED)")
        payload: Any = None
        if kind != EVENTS_RULE:
            try:
                payload = {} if raw_input is None else json.loads(str(raw_input))
            except ValueError:
                raise TemplateError(f"resource {name}: Target.Input is not JSON") from None
        return cls(name, expression.strip(), str(state) == "ENABLED", kind, payload)


def scheduled_event(
    function: LocalFunction,
    schedule: ScheduleEvent,
    *,
    region: str,
    account_id: str,
    stack_name: str,
    now: datetime | None = None,
) -> Any:
    """What the schedule sends the function: an EventBridge rule's Scheduled Event, or the
    Scheduler target's Input."""
    if schedule.type != EVENTS_RULE:
        return schedule.payload
    name = f"{stack_name}-{schedule.name}"
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
        return self.schedule.name


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
            if not source.schedule.enabled:
                log.info("%s is DISABLED: it runs only via %s", source.label, manual)
                continue
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
