"""Callback work after a call reached a CRM (docs/missed-calls.md): a missed incoming call opens a
callback task for its manager, once per caller and window; an answered call with the caller closes
his open tasks; an outgoing call to a number the CRM does not know may create the contact there.

Runs in the delivery of the call to that CRM (callbridge.features.delivery.engine), after the CRM took
the call: the delivery's lease makes one worker handle one (call, CRM), and a failure for now
reschedules the delivery with its backoff (the call's upload is then answered as a duplicate). Exactly
once (store/callbacks.py): only the call that started a task opens it; a try that may have saved it
(the CRM failed after saving: a 500, a timeout) leaves the task `creating`, and the next try asks the
CRM for the task by its marker before creating one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from callbridge import registry
from callbridge.core import missed
from callbridge.core.accounts import Account
from callbridge.core.config import WEEKDAYS, CallbackSettings, CrmSettings, UserMapping
from callbridge.core.model import Call
from callbridge.core.terms import Direction, MissedReason, Outcome
from callbridge.crm.base import CALLBACK_TASKS, CallbackRequest, CallbackTasks, is_missed_incoming, offers, with_secrets
from callbridge.infra import clock
from callbridge.infra.http import PermanentHttpError, TransientHttpError
from callbridge.infra.observability import logger, metric
from callbridge.store import callbacks as store


@dataclass(frozen=True, slots=True)
class FollowUp:
    kind: str  # "ok" | "transient" | "failed" (given up: recorded, the call stays delivered)
    detail: str = ""
    error: bool = False  # given up for an exception of ours, not for the CRM's answer


NOTHING = FollowUp("ok")


def settings_of(crm: CrmSettings) -> CallbackSettings | None:
    value = getattr(crm, "callbacks", None)
    return value if isinstance(value, CallbackSettings) else None


def applies(crm: CrmSettings, call: Call) -> bool:
    """Whether `call` may mean callback work in this CRM (cheap: no I/O)."""
    if not offers(crm, CALLBACK_TASKS) or not call.phone or not call.phone.startswith("+"):
        return False
    return is_missed_incoming(call) or call.outcome == Outcome.ANSWERED or call.direction == Direction.OUT


def in_hours(options: CallbackSettings, at: datetime, timezone: str) -> bool:
    local = at.astimezone(ZoneInfo(timezone))
    if WEEKDAYS[local.weekday()] not in options.days:
        return False
    if options.hours is None:
        return True
    start_text, end_text = options.hours.split("-")
    start = time(int(start_text[:2]), int(start_text[3:]))
    end = time(23, 59, 59) if end_text == "24:00" else time(int(end_text[:2]), int(end_text[3:]))
    moment = local.time()
    return start <= moment < end if start <= end else (moment >= start or moment < end)  # overnight hours


def owners(account: Account, phone: str) -> list[UserMapping]:
    """The managers a task of `phone` is for, best first: the caller's responsible manager, then the
    account's owner of missed calls (the CRM's default user after them)."""
    users = {u.pbx_user: u for u in account.settings.users}
    found: list[UserMapping] = []
    for pbx_user in (missed.responsible(account.id, phone), account.settings.missed_calls.owner):
        if pbx_user and pbx_user in users and users[pbx_user] not in found:
            found.append(users[pbx_user])
    return found


def marker(account: str, crm: str, sk: str) -> str:
    """Our mark in the CRM's task: short, unique per task, and the same on every try."""
    return "cb-" + hashlib.sha256(f"{account}#{crm}#{sk}".encode()).hexdigest()[:16]


def follow_up(account: Account, crm: CrmSettings, call: Call) -> FollowUp:
    """The callback work of one delivered call in one CRM."""
    options = settings_of(crm)
    if options is None or not applies(crm, call) or call.started_at is None:
        return NOTHING
    connector = registry.crm_capability(crm.kind, CallbackTasks)
    if connector is None:
        return NOTHING
    settings = with_secrets(account.id, crm)
    try:
        if is_missed_incoming(call):
            return _missed(account, settings, options, connector, call)
        if call.outcome == Outcome.ANSWERED:
            result = _reached(account, settings, connector, call)
            if result.kind != "ok" or call.direction != Direction.OUT:
                return result
        if call.direction == Direction.OUT and connector.new_contact(
            account, settings, call, owners(account, call.phone or "")
        ):
            metric("CallbackContactsCreated", Crm=crm.kind)
            return FollowUp("ok", "contact created")
        return NOTHING
    except TransientHttpError as error:
        return FollowUp("transient", f"callback: {error}")
    except PermanentHttpError as error:
        logger().warning("a CRM refused callback work", extra={"crm": crm.name, "error": str(error)})
        return FollowUp("failed", f"callback: {error}")


def _missed(
    account: Account, crm: CrmSettings, options: CallbackSettings, connector: CallbackTasks, call: Call
) -> FollowUp:
    assert call.started_at is not None and call.phone
    phone, at = call.phone, call.started_at
    if not options.enabled:  # no tasks; the CRM may still want the unknown caller as a contact
        created = connector.new_contact(account, crm, call, owners(account, phone))
        return FollowUp("ok", "callback: contact created" if created else "")
    if not in_hours(options, at, account.timezone):
        return FollowUp("ok", "callback: outside the configured hours")
    task = store.task_of_call(account.id, crm.name, phone, call.call_id)
    if task is None:
        window = timedelta(minutes=options.window_minutes)
        task, started = store.join_or_start(
            account.id,
            crm.name,
            phone,
            call.call_id,
            clock.iso(at),
            clock.iso(at - window),
            clock.iso(at + window),
            (call.missed_reason or MissedReason.UNKNOWN).value,
        )
    else:
        started = task.get("starter") == call.call_id
    sk = str(task["sk"])
    if not started:
        return FollowUp("ok", f"callback: joined task {sk}")
    return _open(account, crm, options, connector, phone, sk)


def _open(
    account: Account, crm: CrmSettings, options: CallbackSettings, connector: CallbackTasks, phone: str, sk: str
) -> FollowUp:
    now = clock.iso(clock.now())
    taken = store.begin_open(account.id, crm.name, phone, sk)
    if taken is None:
        return FollowUp("ok", f"callback: task {sk} already settled")
    first = clock.parse_iso(str(taken["first_at"]))
    reached_at = store.head(account.id, crm.name, phone).get("reached_at")
    if reached_at and str(reached_at) >= str(taken["first_at"]):
        store.skipped(account.id, crm.name, phone, sk, "the client was reached before the task was opened", now)
        return FollowUp("ok", "callback: client already reached")
    request = CallbackRequest(
        marker=marker(account.id, crm.name, sk),
        phone=phone,
        missed_at=first,
        due_at=first + timedelta(minutes=options.due_minutes),
        reason=str(taken.get("reason") or MissedReason.UNKNOWN.value),
        owners=owners(account, phone),
        only_unknown=options.mode == "unknown_numbers",
        retry=int(taken.get("attempts") or 0) > 1,
    )
    try:
        result = connector.open_callback_task(account, crm, request)
    except TransientHttpError as error:
        store.failed(account.id, crm.name, phone, sk, str(error))
        raise
    if result.task_id is None:
        store.skipped(account.id, crm.name, phone, sk, result.skipped, now)
        return FollowUp("ok", f"callback: not opened ({result.skipped})")
    store.opened(account.id, crm.name, phone, sk, result.task_id, now, result.customer_created)
    metric("CallbackTasksOpened", Crm=crm.kind)
    # Reached while it was being opened: the answered call's delivery may have seen it unopened.
    reached_at = store.head(account.id, crm.name, phone).get("reached_at")
    if reached_at and str(reached_at) >= str(taken["first_at"]):
        _close(account, crm, connector, phone, {**taken, "crm_task_id": result.task_id}, str(reached_at))
    return FollowUp("ok", f"callback: task {result.task_id} opened")


def _reached(account: Account, crm: CrmSettings, connector: CallbackTasks, call: Call) -> FollowUp:
    """An answered call with the client: his tasks opened before it are done."""
    assert call.started_at is not None and call.phone
    at = clock.iso(call.started_at)
    store.reached(account.id, crm.name, call.phone, at)
    closed = 0
    for task in store.tasks(account.id, crm.name, call.phone):
        if task.get("state") == store.OPEN and str(task.get("first_at")) <= at:
            _close(account, crm, connector, call.phone, task, at, call)
            closed += 1
    return FollowUp("ok", f"callback: {closed} task(s) closed") if closed else NOTHING


def _close(
    account: Account,
    crm: CrmSettings,
    connector: CallbackTasks,
    phone: str,
    task: dict[str, Any],
    at: str,
    call: Call | None = None,
) -> None:
    who = f" by {call.user}" if call is not None and call.user else ""
    way = "called back" if call is not None and call.direction == Direction.OUT else "reached"
    note = f"Client {way}{who} at {at} (answered call)."
    connector.close_callback_task(account, crm, str(task["crm_task_id"]), note)
    store.closed(account.id, crm.name, phone, str(task["sk"]), note, clock.iso(clock.now()))
    metric("CallbackTasksClosed", Crm=crm.kind)
