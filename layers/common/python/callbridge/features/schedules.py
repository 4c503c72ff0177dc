"""Scheduled jobs over accounts: one loop for every per-account job (a PBX's
`ScheduledJob` capability, e.g. the telediscount reconciliation or the ccrm.pl poll, and the PBX user sync).

A failing account is reported and does not stop the others; the next run tries it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from callbridge import registry
from callbridge.infra import clock
from callbridge.infra.observability import bind, logger
from callbridge.pbx.base import ScheduledJob
from callbridge.store import health
from callbridge.store.accounts import list_accounts

T = TypeVar("T")


def each_account(
    accounts: Iterable[str], job: Callable[[str], T], handled: tuple[type[Exception], ...] = (Exception,)
) -> Iterator[tuple[str, T | Exception]]:
    """`job` for each account, logging bound to it; an exception of `handled` is that account's
    result, any other one stops the run."""
    for account in accounts:
        bind(account=account)
        try:
            yield account, job(account)
        except handled as error:
            yield account, error


def run_scheduled(kind: str, event: dict[str, Any]) -> dict[str, Any]:
    """One run of the PBX `kind`'s scheduled job over its accounts (or the one the event names in
    `callbridge_account`; not `account`: EventBridge puts the AWS account id there)."""
    job = registry.pbx_capability(kind, ScheduledJob)
    if job is None:
        raise ValueError(f"no scheduled job for {kind!r}")
    named = event.get("callbridge_account") if isinstance(event, dict) else None
    targets = [str(named)] if named else list_accounts(kind)
    results: dict[str, Any] = {}
    for account, outcome in each_account(targets, job.scheduled_job):
        if isinstance(outcome, Exception):
            logger().exception("scheduled import failed", extra={"kind": kind}, exc_info=outcome)
            results[account] = {"status": "failed", "error": type(outcome).__name__}
        else:
            results[account] = outcome.as_dict()
        _stamp_run(account, kind, "failed" if isinstance(outcome, Exception) else "ok")
    return {"kind": kind, "accounts": results}


def _stamp_run(account: str, job: str, status: str) -> None:
    """When the job last ran for the account: the console counts the next run from it (its
    schedule's rate). A stamp that cannot be written is logged; the job's own work is done."""
    try:
        health.job_run(account, job, clock.iso(clock.now()), status)
    except Exception:
        logger().exception("could not write the scheduled run's health stamp", extra={"job": job})
