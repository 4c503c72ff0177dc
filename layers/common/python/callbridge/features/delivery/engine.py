"""Delivering calls: the hand-off when a call becomes final, the realtime worker, the scheduled drain.

Exactly once, as seen by the CRM:
- one DLV item per (call, CRM), created with a conditional put: a repeated webhook creates nothing;
- a worker takes a delivery with a conditional update (a lease): two workers or two overlapping
  schedules never send the same delivery at the same time;
- once the CRM has answered, the delivery leaves the pending index for good;
- a worker that dies between the CRM's answer and our mark leaves the lease to expire and the call is
  sent again: `externalId` (retailCRM) and `ReferenceId`/identical records (MiniCRM) let the CRM
  answer that replay as a duplicate, which we count as delivered.
Nothing pending is dropped: a transient failure reschedules with exponential backoff, and after
DELIVERY_MAX_ATTEMPTS the delivery is parked `failed` (visible with `callbridge deliveries failed`).

One call never holds back the others: a call its connector cannot build or send (an exception of
ours, not the CRM's answer) is parked `rejected` on its own with the error as its reason, the rest of
the run goes out, and the error counts in the alarmed DeliveriesParked metric (Report.errors).
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from callbridge import registry
from callbridge.core import live, missed
from callbridge.core.accounts import Account, UnknownAccount, get_account
from callbridge.core.config import CrmSettings
from callbridge.core.handoff import recording_settled, send_messages
from callbridge.core.model import Call
from callbridge.crm.base import CallRecords, Connector, DeliveryContext, Record, RecordResult, with_secrets
from callbridge.features import callbacks
from callbridge.features.delivery import cards
from callbridge.infra import clock
from callbridge.infra.http import RetryPolicy
from callbridge.infra.observability import in_context, logger
from callbridge.infra.settings import get_settings
from callbridge.store import deliveries as store
from callbridge.store import health
from callbridge.store.accounts import list_accounts
from callbridge.store.calls import call_key

RECORDING_STORED = "stored"
# In-process retries of one CRM request stay short (attempts: DELIVERY_HTTP_ATTEMPTS): the
# delivery's own backoff (minutes, across runs) handles a longer outage, and a Lambda must not sleep
# through its timeout.
HTTP_RETRY = RetryPolicy(attempts=3, backoff_initial_s=0.5, backoff_max_s=2.0, jitter_s=0.25)
WORKERS = 8  # parallel DynamoDB writes (claims, marks): the client's connection pool is 10
MAX_QUEUE_DELAY_S = 900  # SQS DelaySeconds


@dataclass
class Report:
    claimed: int = 0
    delivered: int = 0
    not_applicable: int = 0  # the CRM has no place for the call (no client number): settled, no alarm
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0
    busy: int = 0  # due but leased by another worker
    requests: int = 0
    # Failures of ours: a call the connector could not build or send (parked `rejected`, counted there
    # too), callback work that raised, or a whole CRM's run that crashed (its deliveries stay pending).
    errors: int = 0
    # Live call cards: best-effort and useful for seconds, so never retried; one whose call has
    # ended by the time it is taken (a queue backlog) is not shown at all.
    cards_failed: int = 0
    cards_late: int = 0
    recordings: int = 0  # recordings sent after their call, as an update of it (not deliveries)
    per_crm: dict[str, int] = field(default_factory=dict)  # deliveries handled per CRM kind
    # (call id, CRM name) -> seconds until its retry is due: the realtime worker queues the retry
    retry_in: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    def add(self, other: Report) -> None:
        for name in (
            "claimed",
            "delivered",
            "not_applicable",
            "duplicates",
            "rejected",
            "failed",
            "retried",
            "deferred",
            "busy",
            "requests",
            "errors",
            "cards_failed",
            "cards_late",
            "recordings",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, count in other.per_crm.items():
            self.per_crm[kind] = self.per_crm.get(kind, 0) + count
        self.retry_in.update(other.retry_in)

    def as_dict(self) -> dict[str, Any]:
        return {name: value for name, value in self.__dict__.items() if name != "retry_in"}

    def metrics(self) -> dict[str, int]:
        """CloudWatch metrics (namespace CallBridge). DeliveriesParked, the operator's alarm
        (`callbridge deliveries failed`): failed after every retry, plus every error of ours
        (DeliveryErrors: a call we could not build or send, a CRM's run that crashed); deliveries the
        CRM itself rejected are counted apart."""
        return {
            "DeliveriesDelivered": self.delivered,
            "DeliveriesRejected": self.rejected,
            "DeliveriesNotApplicable": self.not_applicable,
            "DeliveriesParked": self.failed + self.errors,
            "DeliveryErrors": self.errors,
            "LiveCardsFailed": self.cards_failed,
            "LiveCardsLate": self.cards_late,
            "DeliveriesRetried": self.retried,
            "DeliveryRequests": self.requests,
        }


# -- sending -----------------------------------------------------------------------------------------
def _context(account: Account) -> DeliveryContext:
    users = list(account.settings.users)
    settings = get_settings()
    # A CRM's link lives as long as the recording it plays: the account's tier, else the stack's default.
    retention_days = account.settings.recordings.retention_days
    link_ttl_s = retention_days * 86400 if retention_days else settings.recording_link_ttl_s

    def recording_url(call_id: str) -> str:
        from callbridge.features.recordings.playback import signed_recording_url

        if not settings.public_base_url:
            raise LookupError("PUBLIC_BASE_URL is not set: no recording link can be given to the CRM")
        return signed_recording_url(settings.public_base_url, account.id, call_id, link_ttl_s)

    def recording_file(call_id: str) -> tuple[str, str]:
        from callbridge.features.recordings.playback import download_link

        return download_link(account.id, call_id, recording_url(call_id))

    return DeliveryContext(
        account=account.id,
        timezone=account.timezone,
        users=users,
        recording_url=recording_url,
        recording_file=recording_file,
        phone_region=account.phone_region,
        missed_owner=account.settings.missed_calls.owner,
        responsible=partial(missed.responsible, account.id),
    )


ConnectorFactory = Callable[[CrmSettings, Account], Connector]


def default_connector(crm: CrmSettings, account: Account) -> Connector:
    settings = with_secrets(account.id, crm)
    options = get_settings()
    retry = replace(HTTP_RETRY, attempts=options.delivery_http_attempts)
    return registry.connector(settings, _context(account), retry=retry, timeout_s=options.delivery_http_timeout_s)


def plan(records: list[Record], max_batch: int) -> list[list[Record]]:
    """Requests to send: records grouped (MiniCRM: per UserExtension), then cut at `max_batch`,
    which is the fewest requests the CRM's limits allow."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        groups[record.group].append(record)
    return [items[i : i + max_batch] for items in groups.values() for i in range(0, len(items), max_batch)]


def _read_calls(account: str, call_ids: list[str]) -> dict[str, dict[str, Any]]:
    keys = [call_key(account, c) for c in call_ids]
    return {str(i["call_id"]): i for i in store.get_items(keys) if i.get("call_id")}


def _backoff(attempts: int, retry_after: float | None) -> int:
    base = get_settings().delivery_retry_base_s
    delay = min(3600, base * 2 ** max(0, attempts - 1))
    return int(max(delay, retry_after or 0))


def _run(func: Callable[[], Any]) -> Any:
    return func()


def _parallel(func: Callable[..., Any], args: Iterable[tuple[Any, ...]]) -> list[Any]:
    jobs = list(args)
    if len(jobs) <= 1:
        return [func(*a) for a in jobs]
    run = in_context(func)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(lambda a: run(*a), jobs))


def process(
    account: Account, crm: CrmSettings, call_ids: list[str], *, connector_for: ConnectorFactory | None = None
) -> Report:
    """Claim, send and mark the deliveries of `call_ids` to one CRM of one account."""
    settings = get_settings()
    now = clock.now()
    owner = uuid.uuid4().hex
    name = crm.name
    report = Report()
    claimed = [
        item
        for item in _parallel(
            store.claim, ((account.id, c, name, owner, now, settings.delivery_lease_s) for c in call_ids)
        )
        if item is not None
    ]
    report.busy = len(call_ids) - len(claimed)
    report.claimed = len(claimed)
    if not claimed:
        return report
    report.per_crm[crm.kind] = len(claimed)
    items = {str(i["call_id"]): i for i in claimed}
    calls = _read_calls(account.id, list(items))
    connector = (connector_for or default_connector)(crm, account)
    marks: list[Callable[[], Any]] = []
    to_send: dict[str, CallRecords] = {}
    follows: set[str] = set()  # calls that go now, their recording later (store.reopen_for_recording)
    waiting: set[str] = set()  # calls held for their recording (store.wake_for_recording)
    try:
        for call_id, item in items.items():
            attempts = int(item.get("attempts") or 0)
            raw = calls.get(call_id)
            if raw is None:
                marks.append(
                    _park(account.id, call_id, name, store.REJECTED, "the call no longer exists", attempts, [])
                )
                report.rejected += 1
                continue
            recording = _recording(raw)
            realtime = str(item.get("mode") or crm.mode) == "realtime"
            held = realtime and crm.downloads_recording_on_receipt  # as handoff.call_final holds it
            if recording == PENDING and (held or not realtime) and _young(raw, now, settings.delivery_recording_wait_s):
                # A batch CRM's call waits for its recording: nobody waits for the batch. A realtime
                # one waits if its CRM downloads the file on receipt, woken as soon as the recording
                # settles (handoff.recording_settled); the due time is the drain's re-check.
                due = now + timedelta(seconds=max(60, settings.delivery_realtime_grace_s))
                marks.append(
                    partial(
                        store.reschedule, account.id, call_id, name, owner, due, attempts=attempts, recording_wait=held
                    )
                )
                if held:
                    waiting.add(call_id)
                report.deferred += 1
                continue
            # Otherwise a realtime call does not wait for its recording: a CRM that plays our link
            # whenever asked gets it now (it resolves once the file is stored); one that takes the
            # file gets the recording later, as an update of the same call (`recording_follows`).
            # One held past its wait goes without a link its CRM would download before the file.
            linked = recording == STORED or (
                recording == PENDING and realtime and connector.takes_recording_link and not held
            )
            if recording == PENDING and realtime and not connector.takes_recording_link:
                follows.add(call_id)
            try:
                built = connector.records(Call.from_item(raw), linked)
            except Exception as exc:
                # A call the connector cannot build (a start in year 9999 overflows the account's
                # zone) is parked alone; building it again would fail the same way.
                reason = _error_reason("could not build the CRM's record", exc)
                marks.append(_park(account.id, call_id, name, store.REJECTED, reason, attempts, []))
                report.rejected += 1
                report.errors += 1
                continue
            if built.not_applicable:
                marks.append(
                    partial(_not_applicable, account.id, call_id, name, built.not_applicable, sorted(built.flags))
                )
                report.not_applicable += 1
                continue
            if built.rejected:
                marks.append(
                    _park(account.id, call_id, name, store.REJECTED, built.rejected, attempts, sorted(built.flags))
                )
                report.rejected += 1
                continue
            to_send[call_id] = built
        results: dict[str, list[RecordResult]] = defaultdict(list)
        records = [r for built in to_send.values() for r in built.records]
        unavailable: RecordResult | None = None
        for batch in plan(records, connector.max_batch):
            if unavailable is not None:
                # The CRM is down (a request failed after its retries): don't hammer it with the
                # rest of the run; they are retried with the same backoff.
                sent = [unavailable] * len(batch)
            else:
                sent = _send(connector, batch, report)
                if sent and all(r.kind == "transient" for r in sent):
                    unavailable = sent[0]
            for record, result in zip(batch, sent, strict=True):
                results[record.delivery].append(result)
    finally:
        connector.close()
    # A recording sent as an update is not the call again: its callback work was done with the call.
    taken = [c for c in to_send if _taken(results.get(c) or []) and not items[c].get(store.RECORDING_UPDATE)]
    follow_ups = _follow_ups(account, crm, [calls[c] for c in taken])
    errors: list[str] = []  # the CRM's answers that were not a success, for the health stamp
    for call_id, built in to_send.items():
        outcome = results.get(call_id) or []
        attempts = int(items[call_id].get("attempts") or 0)
        flags = sorted(built.flags)
        transient = [r for r in outcome if r.kind == "transient"]
        rejected = [r for r in outcome if r.kind == "rejected"]
        if transient:
            attempts += 1
            error = transient[0].reason
            errors.append(error)
            if attempts >= settings.delivery_max_attempts:
                marks.append(
                    _park(
                        account.id,
                        call_id,
                        name,
                        store.FAILED,
                        f"gave up after {attempts} tries: {error}",
                        attempts,
                        flags,
                    )
                )
                report.failed += 1
            else:
                due = now + timedelta(seconds=_backoff(attempts, max((r.retry_after or 0) for r in transient)))
                marks.append(
                    partial(store.reschedule, account.id, call_id, name, owner, due, attempts=attempts, error=error)
                )
                report.retried += 1
                report.retry_in[(call_id, name)] = int((due - now).total_seconds())
        elif rejected:
            errors.append(rejected[0].reason)
            report.errors += sum(1 for r in rejected if r.detail.get(OUR_ERROR))
            marks.append(
                _park(account.id, call_id, name, store.REJECTED, "; ".join(r.reason for r in rejected), attempts, flags)
            )
            report.rejected += 1
        else:
            duplicate = all(r.detail.get("duplicate") for r in outcome)
            answer: dict[str, Any] = {"records": len(outcome), "duplicate": duplicate}
            # The CRM has the call; its callback work (features/callbacks.py) is part of the delivery:
            # a failure for now retries the delivery (the call is then answered as a duplicate).
            follow = follow_ups.get(call_id, callbacks.NOTHING)
            if follow.kind == "transient":
                attempts += 1
                if attempts >= settings.delivery_max_attempts:
                    # The call itself is in the CRM; what keeps failing is its callback work.
                    reason = f"gave up after {attempts} tries: {follow.detail}"
                    marks.append(_park(account.id, call_id, name, store.FAILED, reason, attempts, flags))
                    report.failed += 1
                    continue
                due = now + timedelta(seconds=_backoff(attempts, None))
                marks.append(
                    partial(
                        store.reschedule, account.id, call_id, name, owner, due, attempts=attempts, error=follow.detail
                    )
                )
                report.retried += 1
                report.retry_in[(call_id, name)] = int((due - now).total_seconds())
                continue
            if follow.detail:
                answer["callback"] = follow.detail
            report.errors += int(follow.error)
            if items[call_id].get(store.RECORDING_UPDATE):
                # The recording of a call the CRM has had since its hang-up: not a second delivery.
                marks.append(partial(store.mark_recording_sent, account.id, call_id, name, clock.now(), answer))
                report.recordings += 1
                continue
            marks.append(
                partial(_delivered, account.id, call_id, name, answer, flags, recording_follows=call_id in follows)
            )
            report.delivered += 1
            report.duplicates += int(duplicate)
    _parallel(_run, ((m,) for m in marks))
    _recordings_settled_meanwhile(account.id, [c for c in follows if c in to_send] + sorted(waiting))
    _stamp_health(account.id, name, delivered=report.delivered > 0, errors=errors)
    if report.rejected or report.failed:
        logger().warning("deliveries parked", extra={"crm": name, "rejected": report.rejected, "failed": report.failed})
    return report


def _stamp_health(account: str, crm: str, *, delivered: bool, errors: list[str]) -> None:
    """The CRM's last success and last error for the operator console (store/health.py). A stamp
    that cannot be written is logged and forgotten: the deliveries themselves are marked already,
    and the next run writes it again."""
    if not delivered and not errors:
        return
    try:
        health.crm_result(account, crm, clock.iso(clock.now()), success=delivered, error=errors[0] if errors else "")
    except Exception:
        logger().exception("could not write the CRM's health stamp", extra={"crm": crm})


OUR_ERROR = "callbridge_error"  # a RecordResult's detail: the send raised; it is not the CRM's answer


def _error_reason(what: str, exc: BaseException) -> str:
    logger().error(f"delivery: {what}", exc_info=exc)
    return f"CallBridge {what}: {type(exc).__name__}: {exc}"[:500]


def _send(connector: Connector, batch: list[Record], report: Report) -> list[RecordResult]:
    """`connector.send(batch)`, whose exception (a fault of ours, not the CRM's answer) fails only the
    calls it comes from: the batch is halved until the faulty record stands alone, which is
    rejected; an AWS error (the store a connector keeps beside the call) is retried like an outage."""
    report.requests += 1
    try:
        return connector.send(batch)
    except (BotoCoreError, ClientError) as exc:
        logger().warning("delivery: the store failed while sending", extra={"error": str(exc)[:300]})
        return [RecordResult("transient", f"AWS error while sending: {type(exc).__name__}") for _ in batch]
    except Exception as exc:
        if len(batch) == 1:
            return [RecordResult("rejected", _error_reason("could not send the call", exc), detail={OUR_ERROR: True})]
    middle = len(batch) // 2
    return _send(connector, batch[:middle], report) + _send(connector, batch[middle:], report)


def _taken(outcome: list[RecordResult]) -> bool:
    return bool(outcome) and all(r.kind == "ok" for r in outcome)


def _follow_ups(account: Account, crm: CrmSettings, taken: list[dict[str, Any]]) -> dict[str, callbacks.FollowUp]:
    """The callback work of the calls the CRM took: callers in parallel, each caller's calls one after
    the other in the order they started. A caller's task counts its due time from the missed call that
    starts it, so the earliest must come first (in parallel, a later call of the same batch could start
    the task and the earlier one only join it); and a call back must close the task its missed call
    opened before, not race it (store/callbacks.py still guards both with conditional updates)."""
    wanted = [c for c in (Call.from_item(raw) for raw in taken) if callbacks.applies(crm, c)]
    by_caller: dict[str, list[Call]] = {}
    for call in sorted(wanted, key=lambda c: (c.started_at is None, c.started_at or datetime.min.replace(tzinfo=UTC))):
        by_caller.setdefault(call.phone or call.call_id, []).append(call)
    done = _parallel(_follow_ups_in_order, ((account, crm, calls) for calls in by_caller.values()))
    return {
        call.call_id: follow_up
        for calls, follow_ups in zip(by_caller.values(), done, strict=True)
        for call, follow_up in zip(calls, follow_ups, strict=True)
    }


def _follow_ups_in_order(account: Account, crm: CrmSettings, calls: list[Call]) -> list[callbacks.FollowUp]:
    return [_follow_up(account, crm, call) for call in calls]


def _follow_up(account: Account, crm: CrmSettings, call: Call) -> callbacks.FollowUp:
    """One call's callback work; an exception of ours gives it up for this call alone (the call
    stays delivered, `crm_answer.callback` says why, DeliveryErrors counts it)."""
    try:
        return callbacks.follow_up(account, crm, call)
    except Exception as exc:
        return callbacks.FollowUp("failed", _error_reason("callback work failed", exc), error=True)


def _delivered(
    account: str, call_id: str, crm: str, answer: dict[str, Any], flags: list[str], *, recording_follows: bool
) -> None:
    store.mark_delivered(account, call_id, crm, clock.now(), answer, flags, recording_follows=recording_follows)


def _recordings_settled_meanwhile(account: str, call_ids: list[str]) -> None:
    """A call sent before its recording was stored, or held for it, waits for the recording
    worker's word (`handoff.recording_settled`). The worker may have settled it while the call was
    being sent or held and found nothing waiting yet: so the call is read again once it waits, and
    whoever sees both - that worker or this one - goes on (store.reopen_for_recording and
    store.wake_for_recording let one of them)."""
    if not call_ids:
        return
    try:
        for call_id, raw in _read_calls(account, call_ids).items():
            state = raw.get("recording_state")
            if state:
                recording_settled(account, call_id, stored=state == RECORDING_STORED)
    except Exception:
        # The recording worker's own check still sends it; only the race's loser is lost here.
        logger().exception("could not check the recording of calls sent before it was stored")


def _not_applicable(account: str, call_id: str, crm: str, reason: str, flags: list[str]) -> None:
    store.mark_not_applicable(account, call_id, crm, clock.now(), reason, flags)


def _park(
    account: str, call_id: str, crm: str, state: str, reason: str, attempts: int, flags: list[str]
) -> Callable[[], None]:
    return lambda: store.park(state, account, call_id, crm, clock.now(), reason, attempts, flags)


STORED, PENDING, NONE = "stored", "pending", "none"


def _recording(call: dict[str, Any]) -> str:
    """The call's recording: stored, pending (a link whose fetch has neither stored nor given up
    yet) or none (no link, or given up)."""
    state = call.get("recording_state")
    if state == RECORDING_STORED:
        return STORED
    if state or not str(call.get("recording_url") or "").lower().startswith(("http://", "https://")):
        return NONE
    return PENDING


def _young(call: dict[str, Any], now: datetime, wait_s: int) -> bool:
    """The call became final recently enough for a batch CRM to wait for its recording."""
    since = call.get("finalized_at") or call.get("updated_at")
    if not since:
        return False
    return (now - clock.parse_iso(str(since))).total_seconds() < wait_s


# -- entry points ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Message:
    id: str
    account: str
    crm: str
    call_id: str


def _parse(message_id: str, body: str) -> _Message | None:
    try:
        message = json.loads(body)
        account_id, crm_name = str(message["account"]), str(message["crm"])
        call_id = str(message.get("call_id") or "")
    except (ValueError, TypeError, KeyError):
        logger().error("malformed delivery message dropped")
        return None
    if not call_id:
        logger().error("delivery message without a call id dropped")
        return None
    return _Message(message_id, account_id, crm_name, call_id)


def deliver_messages(
    messages: Iterable[tuple[str, str]], *, connector_for: ConnectorFactory | None = None
) -> tuple[Report, list[str]]:
    """One batch of realtime queue messages (message id, body); returns the report and the ids of
    the messages to leave on the queue.

    A body is {account, call_id, crm}: a call to deliver. The calls of one CRM go out together in
    the fewest requests, as in the drain, and the CRMs of the batch at the same time: one slow CRM
    holds back no other's calls. A message never fails for a CRM's answer (the delivery item
    records it and the drain retries when due); only a crash (DynamoDB unreachable…) fails the
    deliveries it concerns, for SQS to redeliver. A live card found here (queued before cards had a
    queue of their own) is shown by the card lane (`cards`) once the calls are out."""
    total = Report()
    failed: list[str] = []
    groups: dict[tuple[str, str], list[_Message]] = defaultdict(list)
    card_bodies: list[str] = []
    for message_id, body in messages:
        if _is_card(body):
            card_bodies.append(body)
            continue
        parsed = _parse(message_id, body)
        if parsed is not None:
            groups[(parsed.account, parsed.crm)].append(parsed)
    for report, not_done in _parallel(_deliver_group, ((key, group, connector_for) for key, group in groups.items())):
        total.add(report)
        failed.extend(not_done)
    if card_bodies:
        shown = cards.show_messages(card_bodies)
        total.cards_failed += shown.failed
        total.cards_late += shown.late
    return total, failed


def _is_card(body: str) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("kind") == live.KIND


def _deliver_group(
    key: tuple[str, str], group: list[_Message], connector_for: ConnectorFactory | None
) -> tuple[Report, list[str]]:
    """The calls of one batch to one CRM of one account: (the report, the message ids to retry)."""
    account_id, crm_name = key
    try:
        account = get_account(account_id)
    except UnknownAccount:
        logger().error("delivery message of an unknown account dropped")
        return Report(), []
    except Exception:
        logger().exception("could not read the account of delivery messages")
        return Report(), [m.id for m in group]
    crm = account.settings.crm(crm_name)
    if crm is None:
        logger().warning("delivery message for a CRM the account no longer has", extra={"crm": crm_name})
        return Report(), []
    try:
        report = process(account, crm, list(dict.fromkeys(m.call_id for m in group)), connector_for=connector_for)
    except Exception:
        logger().exception("realtime delivery failed", extra={"account": account_id, "crm": crm_name})
        return Report(), [m.id for m in group]
    _queue_retries(account_id, report.retry_in)
    return report, []


def _queue_retries(account_id: str, retry_in: dict[tuple[str, str], int]) -> None:
    """A realtime delivery that failed for now is retried from the queue when due, not at the
    drain's next run. A retry due later than SQS can delay a message (15 min) is the drain's."""
    for (call_id, crm), seconds in retry_in.items():
        if seconds > MAX_QUEUE_DELAY_S:
            continue
        try:
            send_messages(account_id, call_id, [crm], delay_s=seconds)
        except Exception:
            logger().exception("could not queue a realtime retry: the drain sends it when due")


def drain(
    *,
    accounts: list[str] | None = None,
    connector_for: ConnectorFactory | None = None,
    time_left_ms: Callable[[], int] | None = None,
) -> Report:
    """Deliver everything due: every pending delivery of batch CRMs, and realtime ones the queue path
    left behind (due after the grace period). One chunk of DELIVERY_CHUNK per CRM and round, so a
    batch goes out in the fewest requests; stops starting new chunks when time runs short."""
    settings = get_settings()
    total = Report()
    for account_id in accounts if accounts is not None else list_accounts():
        try:
            account = get_account(account_id, refresh=True)
        except UnknownAccount:
            continue
        for crm in account.settings.crms:
            while time_left_ms is None or time_left_ms() > 60_000:
                due = list(store.due(account_id, crm.name, clock.now(), settings.delivery_chunk))
                if not due:
                    break
                try:
                    report = process(account, crm, due, connector_for=connector_for)
                except Exception:
                    # One CRM's trouble (a missing secret, a bad config) must not stop the others;
                    # its deliveries stay pending and the next run tries again. Counted as an error
                    # (the DeliveriesParked alarm): a run that keeps crashing is not silent.
                    logger().exception("delivery to a CRM failed", extra={"account": account_id, "crm": crm.name})
                    total.errors += 1
                    break
                total.add(report)
                if report.claimed == 0 or len(due) < settings.delivery_chunk:
                    break
    return total
