"""Backfill: import a past date range from a PBX that offers it (its `Backfill` capability, e.g.
ccrm.pl `callHistory`, telediscount `get_calls`) into the Calls table, once, resumably.

- Every call goes through the same writer as the live path (core/record.py FinalCall, same
  markers), so a call already stored by a webhook or a poll is not stored again, and running a
  backfill twice stores nothing the second time.
- Progress is a cursor per (account, source, range) (store/cursors.py, name
  `backfill#{source}#{from}#{to}`), saved after each page: an interrupted backfill started again
  with the same range resumes where it stopped. A finished range is not read again unless asked
  (`again=True`).
- `deliver=False` (store only): calls are written with batch writes and never delivered to the CRMs
  (handoff.call_stored(deliver=False)); recordings are still fetched. `deliver=True`: each call is
  stored like a live one and delivered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from callbridge import registry
from callbridge.core.accounts import get_account
from callbridge.infra import clock
from callbridge.pbx.base import (
    Backfill,
    BackfillCursor,
    BackfillOptions,
    BackfillResult,
    Progress,
)
from callbridge.store.cursors import load_cursor, save_cursor

__all__ = ["BackfillError", "BackfillResult", "Progress", "cursor_name", "run", "sources"]


class BackfillError(ValueError):
    """The request makes no sense for this account (wrong source, empty range)."""


def sources() -> tuple[str, ...]:
    """The PBX kinds whose adapter can backfill (the CLI's choices)."""
    return tuple(kind for kind in sorted(registry.PBX) if registry.pbx_offers(kind, Backfill))


def cursor_name(source: str, date_from: datetime, date_to: datetime) -> str:
    return f"backfill#{source}#{clock.iso(date_from)}#{clock.iso(date_to)}"


def _backfill_of(source: str) -> Backfill:
    backfill = registry.pbx_capability(source, Backfill)
    if backfill is None:
        raise BackfillError(f"unknown source {source!r}; one of {', '.join(sources())}")
    return backfill


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
    backfill = _backfill_of(source)
    if date_from >= date_to:
        raise BackfillError("--from must be before --to")
    account = get_account(account_id)
    if account.pbx_kind != source:
        raise BackfillError(f"account {account_id} takes its calls from {account.pbx_kind or 'nowhere'}, not {source}")
    name = cursor_name(source, date_from, date_to)
    state = load_cursor(account_id, name)
    if state.get("done") and not again:
        return BackfillResult("already_complete", records=int(state.get("records") or 0))

    def save(data: dict[str, Any]) -> None:
        save_cursor(account_id, name, data)

    cursor = BackfillCursor({} if again else state, save)
    options = BackfillOptions(deliver=deliver, progress=progress, api=api, sleep=sleep)
    return backfill.backfill(account, date_from, date_to, cursor, options)
