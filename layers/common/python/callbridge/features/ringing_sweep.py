"""The ringing sweep (scheduled, `RingingSweepFunction`): a call still ringing past its maximum
ringing age is settled as missed.

A missed call is recorded when its phones stop ringing (core/record.py settle_call). If the stop of
a phone is lost (a webhook the PBX gave up on, a PBX that never sends it) and neither the call's
final record nor a reconciliation comes, the call would ring for ever. Each ringing call is listed
under its first ring (store/open_calls.py, `RINGING`); every run reads, per account, only the
entries older than MAX_RINGING_SECONDS and asks settle_call (`overdue`) about each: the same
conditional write as a settle message, so a sweep racing a late event, the call's history or another
sweep records the call once and hands it on once. An entry is forgotten once its call is final or
answered; a call that is still alive (an event within the age) keeps its entry for the next run.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from callbridge.core.record import settle_call
from callbridge.features.schedules import each_account
from callbridge.infra import clock
from callbridge.infra.observability import bind, logger
from callbridge.infra.settings import get_settings
from callbridge.store import open_calls
from callbridge.store.accounts import list_accounts

# What settle_call answered that ends the entry: the call is final (now or before), answered (its
# ringing is over, its own settle follows its end), gone, or not a call that can be missed.
_DONE = frozenset({"missed", "final", "derived", "answered", "unknown_call", "not_incoming"})
_FORGET_EVERY = 25  # one batch write


def sweep_account(account: str) -> dict[str, int]:
    """Settle the calls of `account` listed as ringing longer than the maximum ringing age; the
    count of each settle answer."""
    cutoff = clock.now() - timedelta(seconds=get_settings().max_ringing_seconds)
    entries = open_calls.open_between(account, open_calls.RINGING, open_calls.EARLIEST, clock.iso(cutoff))
    results: Counter[str] = Counter()
    done: list[open_calls.OpenCall] = []
    for entry in entries:
        bind(account=account, call_id=entry.call_id)
        status = settle_call(account, entry.call_id, overdue=True).status
        results[status] += 1
        if status in _DONE:
            done.append(entry)
        if len(done) >= _FORGET_EVERY:  # a run cut short by its timeout keeps what it finished
            open_calls.forget(account, open_calls.RINGING, done)
            done = []
        if status == "missed":
            logger().info("ringing past its maximum age: settled as missed", extra={"call_id": entry.call_id})
    bind(account=account)
    open_calls.forget(account, open_calls.RINGING, done)
    return dict(results)


def run(event: dict[str, Any]) -> dict[str, Any]:
    """One sweep over every account (or the one the event names in `callbridge_account`, as the
    other scheduled jobs: features/schedules.py). A failing account is reported, the others go on."""
    named = event.get("callbridge_account") if isinstance(event, dict) else None
    targets = [str(named)] if named else list_accounts()
    report: dict[str, Any] = {}
    for account, outcome in each_account(targets, sweep_account):
        if isinstance(outcome, Exception):
            logger().exception("ringing sweep failed", exc_info=outcome)
            report[account] = {"status": "failed", "error": type(outcome).__name__}
        elif outcome:
            report[account] = outcome
    return {"max_ringing_seconds": get_settings().max_ringing_seconds, "accounts": report}
