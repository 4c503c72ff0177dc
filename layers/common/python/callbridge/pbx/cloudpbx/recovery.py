"""The Cloud PBX's own call history (CRM → PBX `history`, CSV) read back: the scheduled
reconciliation of a sliding window and the backfill of a past range (docs/cloudpbx.md,
"Reconciliation and backfill").

A line of the history becomes the same FinalCall a `history` webhook makes - same call id, same
marker (`history`, direction, user) - so whichever of the webhook, the reconciliation and a
backfill comes first stores the call and the others change nothing. A call the events already made
final from themselves (core/record.py, derived) is corrected in place, not handed on again. A line
that cannot be read is reported (counted, logged with its line number) and the others are stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from callbridge.core.accounts import Account, get_account
from callbridge.core.phones import normalize
from callbridge.core.record import FinalCall, marked, store_final, store_final_batch
from callbridge.core.terms import Direction, Flag, Marker, Outcome, StartSource
from callbridge.infra import clock
from callbridge.infra.observability import in_context, logger
from callbridge.infra.settings import get_settings
from callbridge.pbx.base import BackfillCursor, BackfillOptions, BackfillResult, PbxNotConfigured
from callbridge.pbx.cloudpbx.client import CloudPbxClient, for_account
from callbridge.pbx.cloudpbx.history_csv import HistoryRow, MalformedLine, decode_history, parse_history_csv
from callbridge.pbx.cloudpbx.protocol import KIND
from callbridge.pbx.cloudpbx.users import pbx_user
from callbridge.store import calls

# Lines asked for per request. The PBX documents `limit` but no paging: an answer that fills it may
# have left calls out, so that time range is asked again in halves (`read_range`).
LIMIT = 1000
BACKFILL_SLICE = timedelta(hours=6)  # one cursor step of a backfill
_SECOND = timedelta(seconds=1)
# Store-only backfill: calls per batch-write job, and jobs at once (DynamoDB round trips overlap).
_WRITE_CHUNK = 100
_WRITERS = 4


@dataclass
class RecoveryResult:
    status: str = "complete"  # or "not_configured": no api_url/token, nothing to ask
    records: int = 0  # lines read
    stored: int = 0  # calls stored by this run (the webhook never came)
    corrected: int = 0  # calls recorded from their events, corrected by the PBX's line
    known: int = 0  # already stored by their webhook (or an earlier run)
    malformed: int = 0  # lines that could not be read (reported, skipped)
    requests: int = 0
    bad_lines: list[dict[str, Any]] = field(default_factory=list)  # line number and reason, no content

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def client_for(account: Account) -> CloudPbxClient:
    found = for_account(account)
    if found is None:
        raise PbxNotConfigured(f"account {account.id}: the Cloud PBX needs api_url and token to read its history")
    return found


def read_range(
    api: Any, start: datetime, end: datetime, result: RecoveryResult, limit: int = LIMIT
) -> Iterator[HistoryRow]:
    """The lines of the calls that started within [start, end], each range asked again in halves
    while its answer fills `limit` (down to one second, which is then taken as it is)."""
    pending = [(start, end)]
    while pending:
        lo, hi = pending.pop()
        body = api.history(lo, hi, limit=limit)
        result.requests += 1
        rows, bad = parse_history_csv(decode_history(body))
        if len(rows) + len(bad) >= limit and hi - lo > _SECOND:
            middle = lo + (hi - lo) / 2
            middle = middle.replace(microsecond=0)
            pending.append((middle + _SECOND, hi))
            pending.append((lo, middle))
            continue
        _report(bad, result)
        for row in rows:
            if lo <= row.start <= hi:  # a PBX that reads the range loosely must not shift calls
                yield row


def _report(bad: list[MalformedLine], result: RecoveryResult) -> None:
    for line in bad:
        result.malformed += 1
        if len(result.bad_lines) < 20:
            result.bad_lines.append({"line": line.line, "reason": line.reason})
        logger().warning("history line not readable, skipped", extra={"line": line.line, "reason": line.reason})


def final_call(account: Account, row: HistoryRow) -> FinalCall:
    """The canonical call of one history line, as its webhook would have made it."""
    flags: set[str] = set()
    phone = normalize(row.client, account.phone_region)
    if phone.e164 is None:
        flags.add(Flag.PHONE_UNPARSED)
    if row.account.startswith("g_"):
        flags.add(Flag.GROUP_USER)
    link = row.record
    if link is not None and not link.lower().startswith(("https://", "http://")):
        flags.add(Flag.BAD_RECORDING_LINK)
    if row.type == "missed":
        outcome = Outcome.MISSED
    elif row.type == "out" and row.duration == 0:
        outcome = Outcome.NO_ANSWER
    else:
        outcome = Outcome.ANSWERED
    user = pbx_user(account, row.account)
    return FinalCall(
        call_id=row.uid,
        source=KIND,
        marker=Marker("history", row.direction, user),
        direction=Direction(row.direction),
        outcome=outcome,
        phone=phone.key,
        phone_raw=phone.raw,
        started_at=clock.iso(row.start),
        start_source=StartSource.PBX,
        duration=row.duration,
        our_number=normalize(row.via, account.phone_region).key if row.via else None,
        user=user,
        source_status=row.type,
        recording_url=link,
        flags=frozenset(flags),
        raw=row.raw,
        extra={"waiting_time": row.wait, "recovered_from": "history_api"},
    )


def store_rows(account: Account, rows: list[HistoryRow], result: RecoveryResult, *, deliver: bool = True) -> None:
    """Store the lines whose call is not final yet, each like its webhook; correct derived calls."""
    candidates = [final_call(account, row) for row in rows]
    done = marked(account.id, [(c.call_id, c.marker) for c in candidates])
    unmarked = [c for c in candidates if (c.call_id, c.marker.sk) not in done]
    result.known += len(candidates) - len(unmarked)
    states = calls.states(account.id, [c.call_id for c in unmarked])
    for call in unmarked:
        existing = states.get(call.call_id, {})
        if existing.get("final") and not existing.get("derived_from"):
            result.known += 1  # its webhook made it final (under another user's marker)
            continue
        if store_final(account, call, deliver=deliver, existing=existing, unless_final=True):
            if existing.get("final"):
                result.corrected += 1
            else:
                result.stored += 1
        else:
            result.known += 1


def reconcile_account(account_id: str, *, api: Any = None, now: datetime | None = None) -> RecoveryResult:
    """One run of the scheduled reconciliation for one account: the calls that started within the
    last CLOUDPBX_RECONCILE_WINDOW_MINUTES, stored if their webhook never came."""
    account = get_account(account_id)
    api = api or for_account(account)
    if api is None:
        # A PBX we cannot ask (no API address or key): its calls come by webhook only, and an
        # answered call whose history is lost is recorded from its events (core/record.py).
        return RecoveryResult(status="not_configured")
    end = (now or clock.now()).replace(microsecond=0)
    start = end - timedelta(seconds=get_settings().cloudpbx_reconcile_window_s)
    result = RecoveryResult()
    rows = list(read_range(api, start, end, result))
    result.records = len(rows) + result.malformed
    store_rows(account, rows, result)
    logger().info("cloudpbx reconciliation done", extra={"account": account.id, **result.as_dict()})
    return result


# The ScheduledJob capability of the adapter (callbridge.pbx.base).
scheduled_job = reconcile_account


def backfill(
    account: Account, date_from: datetime, date_to: datetime, cursor: BackfillCursor, options: BackfillOptions
) -> BackfillResult:
    """features/backfill.py for the Cloud PBX: the range in fixed slices of BACKFILL_SLICE, the
    cursor the next slice (saved after each one is stored), so an interrupted run resumes there."""
    api = options.api or client_for(account)
    slices = list(_slices(date_from, date_to))
    first = int(cursor.state.get("slice") or 0)
    done = int(cursor.state.get("records") or 0)
    result = BackfillResult("complete", resumed_at=first)
    counts = RecoveryResult()
    for index in range(first, len(slices)):
        lo, hi = slices[index]
        rows = list(read_range(api, lo, hi, counts))
        _store(account, rows, counts, deliver=options.deliver)
        done += len(rows)
        result.records += len(rows)
        cursor.save({"slice": index + 1, "records": done, "done": False})
        if options.progress is not None:
            options.progress(done, None)
    result.stored = counts.stored
    result.unreadable = counts.malformed
    cursor.save({"slice": len(slices), "records": done, "done": True})
    return result


def _store(account: Account, rows: list[HistoryRow], counts: RecoveryResult, *, deliver: bool) -> None:
    if deliver:
        store_rows(account, rows, counts, deliver=True)
        return
    # Store only: the calls we have no item of are written with batch writes, in parallel chunks
    # (each chunk writes its calls before their markers); a call with an item (a webhook's, its
    # events', a derived one) goes through store_final like the reconciliation's, one by one.
    candidates = [final_call(account, row) for row in rows]
    states = calls.states(account.id, [c.call_id for c in candidates])
    new = [c for c in candidates if c.call_id not in states]
    chunks = [new[i : i + _WRITE_CHUNK] for i in range(0, len(new), _WRITE_CHUNK)]

    def write(chunk: list[FinalCall]) -> int:
        return store_final_batch(account, chunk, deliver=False, without_items=True)

    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        counts.stored += sum(pool.map(in_context(write), chunks))
    present = [c for c in candidates if c.call_id in states]
    done = marked(account.id, [(c.call_id, c.marker) for c in present])
    for call in present:
        existing = states[call.call_id]
        if (call.call_id, call.marker.sk) in done or (existing.get("final") and not existing.get("derived_from")):
            counts.known += 1
        elif store_final(account, call, deliver=False, existing=existing, unless_final=True):
            counts.corrected += 1 if existing.get("final") else 0
            counts.stored += 0 if existing.get("final") else 1


def _slices(date_from: datetime, date_to: datetime) -> Iterator[tuple[datetime, datetime]]:
    """[from, to) as inclusive second ranges of BACKFILL_SLICE: fixed, so a saved index means the
    same slice when the same range is run again."""
    lo = date_from.replace(microsecond=0)
    while lo < date_to:
        hi = min(lo + BACKFILL_SLICE, date_to)
        yield lo, hi - _SECOND
        lo = hi
