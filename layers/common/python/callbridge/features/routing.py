"""Routing a ringing call to the manager who owns the client (the Cloud PBX `contact` answer,
docs/clicktocall.md, "Routing in `contact`").

`responsible` is the PBX user who owns the caller: from our directory first, else from the CRMs of
the account that offer a responsible lookup (callbridge.crm.base), asked in the account file's order,
and only while that manager is free (the CRM's own rule; we also apply the last status the CRM pushed
to us, store/statuses.py).

Latency. The PBX waits for this answer while the phone rings, so this module imports nothing beyond
what the contact path already has; the CRM branch (threads, httpx, the CRM client, SSM) loads lazily
and only for callers the directory does not know. The live lookup runs in a worker thread and is
waited for until the contact budget (`CONTACT_BUDGET_MS`, measured from the request's arrival) is
spent; then the PBX gets a valid answer without `responsible` and falls back to its own routing. The
thread goes on: its answer, including "no manager", is cached for the next call.

Cache (store/routing_cache.py): shared by every Lambda of the account, since a burst of calls from one
number lands on several environments. A failed lookup is cached briefly too, so that a CRM outage
costs one budget per number and minute, not one per ring.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from callbridge.infra.observability import in_context
from callbridge.infra.settings import get_settings
from callbridge.store import routing_cache, statuses
from callbridge.store.routing_cache import clear_memory_cache
from callbridge.store.statuses import STATUSES

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from callbridge.core.accounts import Account
    from callbridge.core.config import CrmSettings

__all__ = ["STATUSES", "clear_memory_cache", "route", "store_status"]
# Time kept back from the budget for shaping the answer and the way back to the PBX.
ANSWER_MARGIN_S = 0.05
# How long a live lookup may take in the background, for the cache (below the function's timeout).
LOOKUP_TIMEOUT_S = 8.0
FAILURE_TTL_S = 30

_in_flight: dict[tuple[str, str], Future[dict[str, Any]]] = {}
_executor: ThreadPoolExecutor | None = None


def lookup_crms(account: Account) -> list[CrmSettings]:
    """The account's CRMs that can name a caller's responsible manager."""
    if not account.has_crms:
        return []
    from callbridge.crm.base import RESPONSIBLE_LOOKUP, offers

    return [crm for crm in account.settings.crms if offers(crm, RESPONSIBLE_LOOKUP)]


# Where the last answer of this thread came from, for the ContactLatency metric's Served dimension:
# directory | cache | crm | timeout | error.
SERVED: ContextVar[str] = ContextVar("routing_served", default="directory")


def route(account: Account, e164: str, contact: dict[str, Any] | None, started: float) -> dict[str, str]:
    """The `contact` answer for a caller; `started` is the request's arrival (time.monotonic())."""
    SERVED.set("directory")
    try:
        crms = lookup_crms(account)
    except Exception:  # the ringing phone gets a valid answer whatever is wrong with the settings
        _log_exception("the account's CRM settings are unreadable; routing by the directory", account.id)
        crms = []
    name = str(contact.get("name") or "") if contact else ""
    responsible = str(contact.get("responsible") or "") if contact else ""
    if not crms or responsible or not get_settings().routing_cache_table:
        if responsible and crms and not is_free(account.id, responsible):
            responsible = ""
        return _answer(name, responsible)
    found = _cached(account.id, e164)
    if found is None:
        found = _live(account, crms, e164, started)
    else:
        SERVED.set("cache")
    owner = str(found.get("pbx_user") or "")
    if owner and not is_free(account.id, owner):
        owner = ""
    return _answer(name or str(found.get("contact_name") or ""), owner)


def _answer(name: str, responsible: str) -> dict[str, str]:
    answer = {"contact_name": name, "responsible": responsible}
    return {k: v for k, v in answer.items() if v}


def is_free(account_id: str, pbx_user: str) -> bool:
    """False only when the CRM told us the manager is busy, at dinner or on a break. No stored
    status (never reported, or the store failed) leaves the decision to the CRM and the PBX."""
    try:
        status = statuses.get_status(account_id, pbx_user)
    except Exception:
        _log_exception("manager status read failed; routing as if free", account_id)
        return True
    return status in (None, "free")


def store_status(account_id: str, pbx_user: str, status: str, reported_by: dict[str, str | None]) -> None:
    statuses.put_status(account_id, pbx_user, status, reported_by)


def _cached(account_id: str, e164: str) -> dict[str, Any] | None:
    try:
        return routing_cache.cached(account_id, e164)
    except Exception:
        _log_exception("routing cache read failed", account_id)
        return None


# -- live lookup ---------------------------------------------------------------------------------


def _live(account: Account, crms: list[CrmSettings], e164: str, started: float) -> dict[str, Any]:
    from concurrent.futures import TimeoutError as FutureTimeout

    key = (account.id, e164)
    future = _in_flight.get(key)
    if future is None:
        # Under the caller's log keys (account): a pool thread has none of its own.
        future = _pool().submit(in_context(lookup), account, crms, e164)
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
        _log_warning("the CRM did not answer within the contact budget; answering without it", account.id)
    except Exception:
        SERVED.set("error")
        _log_exception("the CRM's manager lookup failed; answering without it", account.id)
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
            routing_cache.store_cached(account_id, e164, done.result(), ttl)
        else:
            # Remember the failure briefly: a down CRM must not cost every ring the whole budget.
            routing_cache.store_cached(account_id, e164, {"lookup_failed": True}, min(ttl, FAILURE_TTL_S))
    except Exception:
        _log_exception("routing cache write failed", account_id)
    finally:
        _in_flight.pop(key, None)


def lookup(account: Account, crms: list[CrmSettings], e164: str) -> dict[str, Any]:
    """The first CRM's answer that names a PBX user (else the last answer, for the contact's name):
    {pbx_user?, contact_name?, manager_id?, manager_code?}; {} when no CRM names anybody."""
    from callbridge import registry
    from callbridge.crm.base import ResponsibleLookup

    entry: dict[str, Any] = {}
    for crm in crms:
        capability = registry.crm_capability(crm.kind, ResponsibleLookup)
        if capability is None:  # the settings offered it, the package implements none
            continue
        found = capability.lookup_responsible(account, crm, e164, LOOKUP_TIMEOUT_S).as_dict()
        entry = {**found, "contact_name": entry.get("contact_name") or found.get("contact_name")}
        entry = {k: v for k, v in entry.items() if v}
        if entry.get("pbx_user"):
            break
    return entry


def _log_warning(message: str, account_id: str) -> None:
    from callbridge.infra.observability import logger

    logger().warning(message, extra={"account": account_id})


def _log_exception(message: str, account_id: str) -> None:
    from callbridge.infra.observability import logger

    logger().exception(message, extra={"account": account_id})
