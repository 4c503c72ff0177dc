"""Callback tasks of the Calls table: one partition per (account, CRM, caller).

    CBK#{account}#{crm}#{E.164}  HEAD                        the caller's current task (a pointer)
        current      sk of the task the caller's missed calls join now
        first_at     first missed call of that task (UTC ISO)
        reached_at   the latest answered call with the caller (UTC ISO): the client was reached
    CBK#{account}#{crm}#{E.164}  T#{first missed at}#{call id}   one callback task
        state        pending | creating | open | closed | skipped
        calls        the missed calls it stands for (a string set)
        starter      the call that started it: only that call's delivery opens it in the CRM
        attempts     how often opening was tried (> 1: an earlier try may have saved it)
        crm_task_id, opened_at, closed_at, note, reason, skipped
    expires_at   every item: KEEP_DAYS after its last change (the table's TTL)

The HEAD is moved with one conditional update, so two missed calls of one caller handled at the same
instant never both start a task; the task item itself is only ever updated (never put), so a joiner
that reaches it before its starter adds to it instead of being overwritten.
"""

from __future__ import annotations

import time
from typing import Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item, query_items, updated_item_if
from callbridge.store.keys import callback_pk
from callbridge.store.updates import Update

HEAD = "HEAD"
TASK_PREFIX = "T#"
PENDING, CREATING, OPEN, CLOSED, SKIPPED = "pending", "creating", "open", "closed", "skipped"
UNFINISHED = (PENDING, CREATING, OPEN)
KEEP_DAYS = 90


def pk(account: str, crm: str, phone: str) -> str:
    return callback_pk(account, crm, phone)


def task_sk(first_at: str, call_id: str) -> str:
    return f"{TASK_PREFIX}{first_at}#{call_id}"


def _key(account: str, crm: str, phone: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk(account, crm, phone)}, "sk": {"S": sk}}


def _table() -> str:
    return get_settings().calls_table


def _update(key: dict[str, Any], update: Update, condition: str | None = None) -> dict[str, Any] | None:
    # Kept KEEP_DAYS after their last change (the table's TTL): a caller's history of tasks does not
    # grow for ever, and a task nobody closed in that time is not closed by us any more.
    update.set(expires_at=int(time.time()) + KEEP_DAYS * 86400)
    request: dict[str, Any] = {"TableName": _table(), "Key": key, **update.request()}
    if condition:
        request["ConditionExpression"] = condition
    return updated_item_if(**request)


def items(account: str, crm: str, phone: str) -> list[dict[str, Any]]:
    """The caller's HEAD and tasks (a handful: one task per window in which he was missed)."""
    kwargs: dict[str, Any] = {
        "TableName": _table(),
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": pk(account, crm, phone)}},
        "ConsistentRead": True,
    }
    return [from_item(i) for i in query_items(kwargs)]


def tasks(account: str, crm: str, phone: str) -> list[dict[str, Any]]:
    return [i for i in items(account, crm, phone) if str(i.get("sk", "")).startswith(TASK_PREFIX)]


def head(account: str, crm: str, phone: str) -> dict[str, Any]:
    response = aws.dynamodb().get_item(TableName=_table(), Key=_key(account, crm, phone, HEAD), ConsistentRead=True)
    item = response.get("Item")
    return from_item(item) if item else {}


def join_or_start(
    account: str, crm: str, phone: str, call_id: str, missed_at: str, window_from: str, window_to: str, reason: str
) -> tuple[dict[str, Any], bool]:
    """The task a missed call belongs to, and whether this call started it. A call starts a new task
    when the caller has none, when his current one began outside the call's window
    (`window_from`..`window_to`, the call's time ± the window) or when he was reached since."""
    new_sk = task_sk(missed_at, call_id)
    start = Update().set(current=new_sk, first_at=missed_at)
    start.bind({"#c": "current", "#f": "first_at", "#r": "reached_at"}, lo=window_from, hi=window_to, at=missed_at)
    condition = "attribute_not_exists(#c) OR #f < :lo OR #f > :hi OR (attribute_exists(#r) AND #r >= #f AND #r <= :at)"
    started = _update(_key(account, crm, phone, HEAD), start, condition) is not None
    sk = new_sk if started else str(head(account, crm, phone).get("current") or new_sk)
    update = Update().set_if_absent(
        account=account, crm=crm, phone=phone, state=PENDING, first_at=sk.split("#")[1] if sk != new_sk else missed_at
    )
    if started:
        update.set_if_absent(starter=call_id, reason=reason)
    update.add_to_set("calls", call_id).set(last_missed_at=missed_at)
    task = _update(_key(account, crm, phone, sk), update)
    assert task is not None  # an unconditional update always returns the item
    return task, task.get("starter") == call_id


def task_of_call(account: str, crm: str, phone: str, call_id: str) -> dict[str, Any] | None:
    """The task a call joined before (a retried delivery must not join or start another)."""
    return next((t for t in tasks(account, crm, phone) if call_id in (t.get("calls") or set())), None)


def begin_open(account: str, crm: str, phone: str, sk: str) -> dict[str, Any] | None:
    """Take a task to open it in the CRM (`attempts` counts the tries); None when it is not
    pending or being opened any more (opened, closed or skipped meanwhile)."""
    update = Update().set(state=CREATING).increment("attempts")
    update.bind({"#s": "state"}, pending=PENDING, creating=CREATING)
    return _update(_key(account, crm, phone, sk), update, "#s IN (:pending, :creating)")


def opened(account: str, crm: str, phone: str, sk: str, task_id: str, at: str, customer_created: bool) -> None:
    update = Update().set(state=OPEN, crm_task_id=task_id, opened_at=at, customer_created=customer_created or None)
    _update(_key(account, crm, phone, sk), update)


def skipped(account: str, crm: str, phone: str, sk: str, why: str, at: str) -> None:
    _update(_key(account, crm, phone, sk), Update().set(state=SKIPPED, skipped=why[:500], settled_at=at))


def closed(account: str, crm: str, phone: str, sk: str, note: str, at: str) -> None:
    _update(_key(account, crm, phone, sk), Update().set(state=CLOSED, note=note[:500], closed_at=at))


def failed(account: str, crm: str, phone: str, sk: str, error: str) -> None:
    """A try that failed for now: the task stays `creating`, and the next try looks for it first."""
    _update(_key(account, crm, phone, sk), Update().set(last_error=error[:500]))


def reached(account: str, crm: str, phone: str, at: str) -> None:
    """The client was reached at `at` (an answered call): later missed calls start a new task."""
    update = Update().set(reached_at=at).bind({"#r": "reached_at"}, at=at)
    _update(_key(account, crm, phone, HEAD), update, "attribute_not_exists(#r) OR #r < :at")
