"""Routing a ringing call to the manager who owns the client (the Cloud PBX `contact` answer,
specs/cloudpbx.md; retailCRM `telephony/manager` and `changeUserStatusUrl`, specs/retailcrm.md).

`responsible` is the PBX user who owns the caller: from our directory first, else from retailCRM's
`GET /api/v5/telephony/manager?phone=…` mapped back through `userId`/`code` to a PBX user - and only
while that manager is free (retailCRM's own rule; we also apply the last status retailCRM pushed to
our `changeUserStatusUrl`, stored as Accounts item `STATUS#{pbx_user}`).

Latency. The PBX waits for this answer while the phone rings, so this module imports nothing beyond
what the contact path already has; the CRM branch (threads, httpx, the retailCRM client, SSM) loads
lazily and only for callers the directory does not know. The live lookup runs in a worker thread and
is waited for until the contact budget (`CONTACT_BUDGET_MS`, measured from the request's arrival)
is spent; then the PBX gets a valid answer without `responsible` and falls back to its own routing.
The thread goes on: its answer, including "no manager", is cached for the next call.

Cache: in DynamoDB (RoutingCacheTable, TTL) so that every concurrent Lambda of the account benefits
from one lookup - a burst of calls from one number lands on several environments - plus a small
in-process copy that spares warm Lambdas the read. A failed lookup is cached briefly too, so that a
CRM outage costs one budget per number and minute, not one per ring. Entries carry their own expiry,
checked on read (DynamoDB's TTL deletion is lazy). A late answer written after a Lambda thawed is
stamped with the time it arrived, so it can never outlive its TTL.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from callbridge.infra import aws
from callbridge.infra.settings import get_settings
from callbridge.store.dynamo import from_item

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from callbridge.core.accounts import Account

STATUSES = ("free", "busy", "dinner", "break")
STATUS_PREFIX = "STATUS#"
# Time kept back from the budget for shaping the answer and the way back to the PBX.
ANSWER_MARGIN_S = 0.05
# How long a live lookup may take in the background, for the cache (below the function's timeout).
LOOKUP_TIMEOUT_S = 8.0
FAILURE_TTL_S = 30
_MEMORY_LIMIT = 10_000

_memory: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
_in_flight: dict[tuple[str, str], Future[dict[str, Any]]] = {}
_executor: ThreadPoolExecutor | None = None


def retailcrm_of(account: Account) -> dict[str, Any] | None:
    for crm in account.config.get("crms") or []:
        if isinstance(crm, dict) and crm.get("kind") == "retailcrm":
            return crm
    return None


# Where the last answer of this thread came from, for the ContactLatency metric's Served dimension:
# directory | cache | crm | timeout | error.
SERVED: ContextVar[str] = ContextVar("routing_served", default="directory")


def route(account: Account, e164: str, contact: dict[str, Any] | None, started: float) -> dict[str, str]:
    """The `contact` answer for a caller; `started` is the request's arrival (time.monotonic())."""
    SERVED.set("directory")
    crm = retailcrm_of(account)
    name = str(contact.get("name") or "") if contact else ""
    responsible = str(contact.get("responsible") or "") if contact else ""
    if crm is None or responsible or not get_settings().routing_cache_table:
        if responsible and crm is not None and not is_free(account.id, responsible):
            responsible = ""
        return _answer(name, responsible)
    found = cached(account.id, e164)
    if found is None:
        found = _live(account, crm, e164, started)
    else:
        SERVED.set("cache")
    owner = str(found.get("pbx_user") or "")
    if owner and not is_free(account.id, owner):
        owner = ""
    return _answer(name or str(found.get("contact_name") or ""), owner)


def _answer(name: str, responsible: str) -> dict[str, str]:
    answer = {"contact_name": name, "responsible": responsible}
    return {k: v for k, v in answer.items() if v}


# -- manager status ------------------------------------------------------------------------------


def status_key(account_id: str, pbx_user: str) -> dict[str, Any]:
    return {"pk": {"S": f"ACCOUNT#{account_id}"}, "sk": {"S": STATUS_PREFIX + pbx_user}}


def is_free(account_id: str, pbx_user: str) -> bool:
    """False only when retailCRM told us the manager is busy, at dinner or on a break. No stored
    status (never reported, or the store failed) leaves the decision to retailCRM and the PBX."""
    try:
        response = aws.dynamodb(True).get_item(
            TableName=get_settings().accounts_table,
            Key=status_key(account_id, pbx_user),
            ProjectionExpression="#s",
            ExpressionAttributeNames={"#s": "status"},
        )
    except Exception:
        _log_exception("manager status read failed; routing as if free", account_id)
        return True
    item = response.get("Item")
    return not item or item.get("status", {}).get("S", "free") == "free"


def store_status(account_id: str, user: dict[str, Any], status: str, *, user_id: str | None, code: str | None) -> None:
    from callbridge.infra import clock
    from callbridge.store.dynamo import to_item

    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    item = to_item(
        {
            "status": status,
            "pbx_user": user["pbx_user"],
            "retailcrm_user_id": user_id,
            "retailcrm_code": code,
            "updated_at": clock.iso(clock.now()),
        }
    )
    aws.dynamodb().put_item(
        TableName=get_settings().accounts_table, Item={**item, **status_key(account_id, str(user["pbx_user"]))}
    )


# -- cache ---------------------------------------------------------------------------------------


def cached(account_id: str, e164: str) -> dict[str, Any] | None:
    key = (account_id, e164)
    now = time.time()
    hit = _memory.get(key)
    if hit and hit[0] > now:
        return hit[1]
    try:
        response = aws.dynamodb(True).get_item(
            TableName=get_settings().routing_cache_table, Key={"account": {"S": account_id}, "phone": {"S": e164}}
        )
    except Exception:
        _log_exception("routing cache read failed", account_id)
        return None
    item = response.get("Item")
    if not item:
        return None
    entry = from_item(item)
    expires = float(entry.get("expires_at") or 0)
    if expires <= now:
        return None
    _remember(key, expires, entry)
    return entry


def _remember(key: tuple[str, str], expires: float, entry: dict[str, Any]) -> None:
    if len(_memory) >= _MEMORY_LIMIT:
        _memory.clear()  # crude, but bounded; the DynamoDB copy still serves
    _memory[key] = (expires, entry)


def store_cached(account_id: str, e164: str, entry: dict[str, Any], ttl_s: int) -> dict[str, Any]:
    from callbridge.store.dynamo import to_item

    now = time.time()
    record = {**entry, "fetched_at": int(now), "expires_at": int(now + ttl_s)}
    _remember((account_id, e164), now + ttl_s, record)
    aws.dynamodb().put_item(
        TableName=get_settings().routing_cache_table,
        Item=to_item({"account": account_id, "phone": e164, **record}),
    )
    return record


def clear_memory_cache() -> None:
    _memory.clear()


# -- live lookup ---------------------------------------------------------------------------------


def _live(account: Account, crm: dict[str, Any], e164: str, started: float) -> dict[str, Any]:
    from concurrent.futures import TimeoutError as FutureTimeout

    key = (account.id, e164)
    future = _in_flight.get(key)
    if future is None:
        future = _pool().submit(lookup, account, crm, e164)
        _in_flight[key] = future
        # The cache is written after the waiting caller has its answer, not on its way.
        future.add_done_callback(lambda done: _cache_outcome(key, done))
    budget = get_settings().contact_budget_ms / 1000
    remaining = started + budget - ANSWER_MARGIN_S - time.monotonic()
    try:
        result = future.result(timeout=max(0.0, remaining))
        SERVED.set("crm")
        return result
    except FutureTimeout:
        SERVED.set("timeout")
        _log_warning("retailCRM did not answer within the contact budget; answering without it", account.id)
    except Exception:
        SERVED.set("error")
        _log_exception("retailCRM manager lookup failed; answering without it", account.id)
    return {}


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        from concurrent.futures import ThreadPoolExecutor

        _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="routing")
    return _executor


def _cache_outcome(key: tuple[str, str], done: Future[dict[str, Any]]) -> None:
    account_id, e164 = key
    ttl = get_settings().routing_cache_ttl_s
    try:
        if done.exception() is None:
            store_cached(account_id, e164, done.result(), ttl)
        else:
            # Remember the failure briefly: a down CRM must not cost every ring the whole budget.
            store_cached(account_id, e164, {"lookup_failed": True}, min(ttl, FAILURE_TTL_S))
    except Exception:
        _log_exception("routing cache write failed", account_id)
    finally:
        _in_flight.pop(key, None)


_apis: dict[tuple[str, str], Any] = {}


def lookup(account: Account, crm: dict[str, Any], e164: str) -> dict[str, Any]:
    """retailCRM's responsible manager for a number, mapped to a PBX user: {pbx_user?, contact_name?,
    manager_id?, manager_code?}. {} when retailCRM names nobody (unknown client, or manager not free)."""
    from callbridge.crm.retailcrm.api import RetailCrmApi
    from callbridge.features.users import find_user
    from callbridge.infra import secrets
    from callbridge.infra.http import RetryPolicy

    name = str(crm.get("name") or "retailcrm")
    api_key = secrets.account_secrets(account.id).get(secrets.crm_secret_name(name, "api_key"), "")
    base_url = str(crm.get("base_url") or "")
    api = _apis.get((base_url, api_key))
    if api is None:
        # One client per CRM and warm Lambda: a new httpx client costs a TLS context every time.
        api = _apis[(base_url, api_key)] = RetailCrmApi(
            base_url, api_key, timeout_s=LOOKUP_TIMEOUT_S, retry=RetryPolicy(attempts=1)
        )
    body = _manager_answer(api, e164)
    manager = body.get("manager") if isinstance(body.get("manager"), dict) else None
    entry: dict[str, Any] = {}
    customer = body.get("customer")
    if isinstance(customer, dict):
        contact_name = customer_name(customer)
        if contact_name:
            entry["contact_name"] = contact_name
    if manager:
        manager_id = manager.get("id")
        code = manager.get("code")
        entry["manager_id"] = str(manager_id) if manager_id is not None else None
        entry["manager_code"] = str(code) if code not in (None, "") else None
        user = find_user(account, crm_code=entry["manager_code"], retailcrm_user_id=entry["manager_id"])
        if user:
            entry["pbx_user"] = str(user["pbx_user"])
    return {k: v for k, v in entry.items() if v is not None}


def _manager_answer(api: Any, e164: str) -> dict[str, Any]:
    from callbridge.crm.retailcrm.api import RetailCrmError

    # The whole answer, not only `manager`: the customer's name is the contact name (RetailCrmApi's
    # manager() keeps only the manager).
    try:
        body: dict[str, Any] = api._call("GET", "/api/v5/telephony/manager", params={"phone": e164, "details": "1"})
    except RetailCrmError as error:
        if error.status == 404:
            return {}
        raise
    return body


def customer_name(customer: dict[str, Any]) -> str:
    parts = [str(customer.get(k) or "").strip() for k in ("firstName", "patronymic", "lastName")]
    full = " ".join(p for p in parts if p)
    return full or str(customer.get("nickName") or customer.get("name") or "").strip()


def _log_warning(message: str, account_id: str) -> None:
    from callbridge.infra.observability import logger

    logger().warning(message, extra={"account": account_id})


def _log_exception(message: str, account_id: str) -> None:
    from callbridge.infra.observability import logger

    logger().exception(message, extra={"account": account_id})
