"""Backfill: import a past date range from a call source (ccrm.pl `callHistory`, telediscount
`get_calls`) into the Calls table, once, resumably.

- Every call goes through the same store as the live path (sources.FinalCall, same markers), so a
  call already stored by a webhook or a poll is not stored again, and running a backfill twice
  stores nothing the second time.
- Progress is a cursor item per (account, source, range) in the Accounts table
  (`CURSOR#backfill#{source}#{from}#{to}`), saved after each page: an interrupted backfill started
  again with the same range resumes where it stopped. A finished range is not read again unless
  asked (`again=True`).
- `deliver=False` (store only): calls are written with batch writes and never delivered to the CRMs
  (pipeline.call_stored(deliver=False)); recordings are still fetched. `deliver=True`: each call is
  stored like a live one and delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from callbridge.core.accounts import get_account
from callbridge.infra import clock

SOURCES = ("ccrm", "telediscount")
_TELEDISCOUNT_CHUNK = 1000

# progress(done, total): records read so far, and the total when the source tells it.
Progress = Callable[[int, int | None], None]


@dataclass
class BackfillResult:
    status: str  # complete | already_complete | rate_limited
    records: int = 0
    stored: int = 0
    resumed_at: int = 0  # page (ccrm) or record offset (telediscount) the run started from

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class BackfillError(ValueError):
    """The request makes no sense for this account (wrong source, empty range)."""


def cursor_sk(source: str, date_from: datetime, date_to: datetime) -> str:
    return f"CURSOR#backfill#{source}#{clock.iso(date_from)}#{clock.iso(date_to)}"


def _cursor(
    account_id: str, source: str, date_from: datetime, date_to: datetime, again: bool
) -> tuple[str, dict[str, Any], BackfillResult | None]:
    """The range's cursor key and saved state, and the answer when an earlier run completed it."""
    from callbridge.pbx.ccrm.importer import load_cursor

    sk = cursor_sk(source, date_from, date_to)
    state = load_cursor(account_id, sk)
    if state.get("done") and not again:
        return sk, state, BackfillResult("already_complete", records=int(state.get("records") or 0))
    return sk, state, None


def run(
    account_id: str,
    source: str,
    date_from: datetime,
    date_to: datetime,
    *,
    deliver: bool,
    progress: Progress | None = None,
    again: bool = False,
    api: Any = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BackfillResult:
    if source not in SOURCES:
        raise BackfillError(f"unknown source {source!r}; one of {', '.join(SOURCES)}")
    if date_from >= date_to:
        raise BackfillError("--from must be before --to")
    account = get_account(account_id)
    if account.pbx_kind != source:
        raise BackfillError(f"account {account_id} takes its calls from {account.pbx_kind or 'nowhere'}, not {source}")
    if source == "ccrm":
        return _ccrm(
            account_id, date_from, date_to, deliver=deliver, progress=progress, again=again, api=api, sleep=sleep
        )
    return _telediscount(account_id, date_from, date_to, deliver=deliver, progress=progress, again=again, api=api)


def _ccrm(
    account_id: str,
    date_from: datetime,
    date_to: datetime,
    *,
    deliver: bool,
    progress: Progress | None,
    again: bool,
    api: Any,
    sleep: Callable[[float], None],
) -> BackfillResult:
    from callbridge.pbx.ccrm.client import PAGE_SIZE, Page
    from callbridge.pbx.ccrm.importer import Window, context, import_window, save_cursor

    account = get_account(account_id)
    sk, state, finished = _cursor(account_id, "ccrm", date_from, date_to, again)
    if finished is not None:
        return finished
    window = Window(clock.iso(date_from), clock.iso(date_to), 1 if again else int(state.get("page") or 1))
    done_before = (window.page - 1) * PAGE_SIZE
    result = BackfillResult("complete", resumed_at=window.page)

    def save(current: Window) -> None:
        save_cursor(account_id, sk, {**current.__dict__, "done": False})

    def counted(page: Page, current: Window) -> None:
        result.records += len(page.records)
        if progress is not None:
            progress(done_before + result.records, page.total_count)

    ctx = context(account, api=api, deliver=deliver, bulk=not deliver, sleep=sleep)
    imported = import_window(ctx, window, save, progress=counted)
    result.stored = imported.stored
    if imported.status != "complete":
        result.status = imported.status
        return result
    save_cursor(account_id, sk, {**window.__dict__, "done": True, "records": done_before + result.records})
    return result


def _telediscount(
    account_id: str,
    date_from: datetime,
    date_to: datetime,
    *,
    deliver: bool,
    progress: Progress | None,
    again: bool,
    api: Any,
) -> BackfillResult:
    from callbridge.core.sources import store_final_batch
    from callbridge.pbx.ccrm.importer import save_cursor
    from callbridge.pbx.telediscount.ingest import record_url, users_of
    from callbridge.pbx.telediscount.protocol import BadRecord, final_call, parse_setup_time
    from callbridge.pbx.telediscount.reconcile import ReconcileResult, api_for, import_records

    account = get_account(account_id)
    sk, state, finished = _cursor(account_id, "telediscount", date_from, date_to, again)
    if finished is not None:
        return finished
    records = (api or api_for(account)).get_calls()
    # get_calls has no date filter and no paging: keep the range, in a stable order, so that the
    # saved offset means the same records when an interrupted run starts again.
    dated = [(parse_setup_time(str(r.get("setup_time") or "")), r) for r in records]
    chosen = sorted(
        ((start, r) for start, r in dated if start is not None and date_from <= start <= date_to),
        key=lambda pair: (pair[0], str(pair[1].get("api_call_id"))),
    )
    offset = 0 if again else int(state.get("offset") or 0)
    result = BackfillResult("complete", resumed_at=offset)
    received = clock.now()
    for start in range(offset, len(chosen), _TELEDISCOUNT_CHUNK):
        chunk = [r for _, r in chosen[start : start + _TELEDISCOUNT_CHUNK]]
        if deliver:
            counts = ReconcileResult()
            import_records(account, chunk, date_from, date_to, counts, deliver=True)
            result.stored += counts.stored
        else:
            calls = []
            for record in chunk:
                try:
                    call = final_call(
                        record,
                        region=account.phone_region,
                        users=users_of(account),
                        received=received,
                        record_url=record_url(account, str(record.get("api_call_id") or "")),
                    )
                except BadRecord:
                    continue
                if call is not None:
                    calls.append(call)
            result.stored += store_final_batch(account_id, calls, deliver=False)
        result.records += len(chunk)
        save_cursor(account_id, sk, {"offset": start + len(chunk), "done": False})
        if progress is not None:
            progress(start + len(chunk), len(chosen))
    save_cursor(account_id, sk, {"offset": len(chosen), "done": True, "records": len(chosen)})
    return result
