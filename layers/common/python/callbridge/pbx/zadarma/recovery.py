"""Zadarma reconciliation and backfill from `/v1/statistics/pbx/` (docs/zadarma.md, "Lost
notifications"): the statistics lines of a period become final calls with the same marker as the
end notification's (calls.final_marker), so a call is stored once whichever reports it first.

The statistics are paged (`skip`, `limit` ≤ 1000), cover at most a month per request, and are
limited to 3 requests a minute per key (client.py keeps to it). A line names no direction, and a
call that rang several extensions may have a line per extension: the lines are grouped by
`pbx_call_id`, the answered one (else the first) speaks for the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from callbridge.core.accounts import Account, get_account
from callbridge.core.record import FinalCall, store_final, store_final_batch
from callbridge.core.terms import Direction
from callbridge.infra import clock
from callbridge.infra.observability import logger
from callbridge.pbx.base import BackfillCursor, BackfillOptions, BackfillResult
from callbridge.pbx.zadarma.calls import as_local, final_call, is_extension, local_time, recorded
from callbridge.pbx.zadarma.client import ZadarmaApi, ZadarmaError, for_account
from callbridge.pbx.zadarma.ingest import recording_announced_before
from callbridge.pbx.zadarma.protocol import call_id_ok

# How far back a scheduled run looks: a notification lost hours ago is still healed, and three
# statistics requests a minute leave room for a page or two per run.
RECONCILE_WINDOW = timedelta(hours=3)
# A call that ended moments ago may not be in the statistics yet: the next run takes it.
SETTLE = timedelta(minutes=2)
BACKFILL_SLICE = timedelta(days=1)  # one cursor step (the API takes at most a month per request)
_SECOND = timedelta(seconds=1)


@dataclass
class RecoveryResult:
    status: str = "complete"  # or "rate_limited": the next run goes on
    records: int = 0  # statistics lines read
    calls: int = 0  # distinct calls among them
    stored: int = 0  # stored by this run (their end notification never came)
    known: int = 0  # already stored (by their notification or an earlier run)
    unreadable: int = 0  # lines without a usable pbx_call_id or start (reported, skipped)
    requests: int = 0
    bad_lines: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def direction_of(row: dict[str, Any]) -> Direction:
    call_id = str(row.get("pbx_call_id") or "")
    if call_id.startswith("out_"):
        return Direction.OUT
    if call_id.startswith("in_"):
        return Direction.IN
    sip, destination = str(row.get("sip") or ""), str(row.get("destination") or "")
    # An extension that dialled a number: the shape of an outgoing line.
    return Direction.OUT if is_extension(sip) and not is_extension(destination) else Direction.IN


def as_fields(row: dict[str, Any], direction: Direction) -> dict[str, str]:
    """A statistics line in the end notification's fields, for calls.final_call."""
    text = {k: "" if v is None else str(v) for k, v in row.items()}
    fields = {
        "pbx_call_id": text.get("pbx_call_id", ""),
        "call_start": text.get("callstart", ""),
        "duration": text.get("seconds", ""),
        "disposition": text.get("disposition", ""),
        "is_recorded": "1" if recorded(row.get("is_recorded")) else "0",
        "call_id_with_rec": text.get("call_id", "") if recorded(row.get("is_recorded")) else "",
    }
    if direction is Direction.OUT:
        fields.update(
            internal=text.get("sip", ""), destination=text.get("destination", ""), caller_id=text.get("clid", "")
        )
    else:
        destination = text.get("destination", "")
        fields.update(caller_id=text.get("clid", ""), internal=destination if is_extension(destination) else "")
    return fields


def calls_of(account: Account, rows: list[dict[str, Any]], result: RecoveryResult) -> list[FinalCall]:
    """One final call per pbx_call_id of the lines (the answered line, else the first)."""
    chosen: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(rows, 1):
        call_id = str(row.get("pbx_call_id") or "")
        if not call_id_ok(call_id) or local_time(str(row.get("callstart") or ""), account.timezone) is None:
            result.unreadable += 1
            if len(result.bad_lines) < 20:
                result.bad_lines.append({"line": number, "reason": "no usable pbx_call_id or callstart"})
            continue
        if call_id not in chosen or (
            str(row.get("disposition", "")).lower() == "answered"
            and str(chosen[call_id].get("disposition", "")).lower() != "answered"
        ):
            chosen[call_id] = row
    now = clock.now()
    found = []
    for row in chosen.values():
        direction = direction_of(row)
        found.append(final_call(account, direction, as_fields(row, direction), now, recovered=True))
    result.calls += len(found)
    return found


def read_period(
    api: ZadarmaApi, account: Account, lo: datetime, hi: datetime, result: RecoveryResult, skip: int = 0
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Pages of the lines of [lo, hi] (UTC), each with the `skip` that follows it."""
    start, end = as_local(lo, account.timezone), as_local(hi, account.timezone)
    while True:
        rows = api.statistics(start, end, skip=skip, limit=api.page_limit)
        result.requests += 1
        result.records += len(rows)
        skip += len(rows)
        yield skip, rows
        if len(rows) < api.page_limit:
            return


def store_calls(account: Account, found: list[FinalCall], result: RecoveryResult, *, deliver: bool = True) -> None:
    """Store the calls not final yet, as their end notification would have (a call another record
    made final is left as it is; one recorded from its events is corrected)."""
    if not deliver:
        result.stored += store_final_batch(account, found, deliver=False)
        return
    for call in found:
        if store_final(account, call, read_existing=True, unless_final=True):
            result.stored += 1
            recording_announced_before(account, call)
        else:
            result.known += 1


def reconcile_account(account_id: str, *, api: ZadarmaApi | None = None, now: datetime | None = None) -> RecoveryResult:
    """One scheduled run for one account: the calls of the last RECONCILE_WINDOW whose end
    notification never came are stored. A 429 ends the run early; the next one reads it again."""
    account = get_account(account_id)
    client = api or for_account(account)
    hi = (now or clock.now()).replace(microsecond=0) - SETTLE
    lo = hi - RECONCILE_WINDOW
    result = RecoveryResult()
    try:
        rows = [row for _, page in read_period(client, account, lo, hi, result) for row in page]
    except ZadarmaError as error:
        if not error.transient:
            raise
        result.status = "rate_limited" if error.status == 429 else "unavailable"
        logger().warning("zadarma reconciliation stopped early", extra={"account": account.id, "reason": str(error)})
        return result
    store_calls(account, calls_of(account, rows, result), result)
    logger().info("zadarma reconciliation done", extra={"account": account.id, **result.as_dict()})
    return result


# The ScheduledJob capability of the adapter (callbridge.pbx.base).
scheduled_job = reconcile_account


def _slices(date_from: datetime, date_to: datetime) -> list[tuple[datetime, datetime]]:
    """[from, to) in fixed inclusive second ranges: a saved index means the same slice again."""
    found = []
    lo = date_from.replace(microsecond=0)
    while lo < date_to:
        hi = min(lo + BACKFILL_SLICE, date_to)
        found.append((lo, hi - _SECOND))
        lo = hi
    return found


def backfill(
    account: Account, date_from: datetime, date_to: datetime, cursor: BackfillCursor, options: BackfillOptions
) -> BackfillResult:
    """features/backfill.py for Zadarma: the range in day slices, each read page by page. The cursor
    is the slice and the page's `skip`, saved after each page is stored, so an interrupted run (a
    429 the client could not wait out, a timeout) resumes at that page."""
    api: ZadarmaApi = options.api or for_account(account, **({"sleep": options.sleep} if options.sleep else {}))
    slices = _slices(date_from, date_to)
    first, skip = int(cursor.state.get("slice") or 0), int(cursor.state.get("skip") or 0)
    done = int(cursor.state.get("records") or 0)
    result = BackfillResult("complete", resumed_at=first * 1_000_000 + skip)
    counts = RecoveryResult()
    for index in range(first, len(slices)):
        lo, hi = slices[index]
        try:
            for next_skip, rows in read_period(api, account, lo, hi, counts, skip):
                store_calls(account, calls_of(account, rows, counts), counts, deliver=options.deliver)
                done += len(rows)
                result.records += len(rows)
                cursor.save({"slice": index, "skip": next_skip, "records": done, "done": False})
                if options.progress is not None:
                    options.progress(done, None)
        except ZadarmaError as error:
            if not error.transient:
                raise
            result.status = "rate_limited" if error.status == 429 else "interrupted"
            break
        skip = 0
        cursor.save({"slice": index + 1, "skip": 0, "records": done, "done": False})
    else:
        cursor.save({"slice": len(slices), "skip": 0, "records": done, "done": True})
    result.stored = counts.stored
    result.unreadable = counts.unreadable
    return result
