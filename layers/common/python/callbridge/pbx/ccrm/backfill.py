"""ccrm.pl backfill (features/backfill.py): the poller's window import over the asked range, its
cursor the window and the next page."""

from __future__ import annotations

import time
from datetime import datetime

from callbridge.core.accounts import Account
from callbridge.infra import clock
from callbridge.pbx.base import BackfillCursor, BackfillOptions, BackfillResult
from callbridge.pbx.ccrm.client import PAGE_SIZE, Page
from callbridge.pbx.ccrm.importer import Window, context, import_window


def backfill(
    account: Account, date_from: datetime, date_to: datetime, cursor: BackfillCursor, options: BackfillOptions
) -> BackfillResult:
    window = Window(clock.iso(date_from), clock.iso(date_to), int(cursor.state.get("page") or 1))
    done_before = (window.page - 1) * PAGE_SIZE
    result = BackfillResult("complete", resumed_at=window.page, first=1)

    def save(current: Window) -> None:
        cursor.save({**current.__dict__, "done": False})

    def counted(page: Page, current: Window) -> None:
        result.records += len(page.records)
        if options.progress is not None:
            options.progress(done_before + result.records, page.total_count)

    sleep = options.sleep or time.sleep
    ctx = context(account, api=options.api, deliver=options.deliver, bulk=not options.deliver, sleep=sleep)
    imported = import_window(ctx, window, save, progress=counted)
    result.stored = imported.stored
    if imported.status != "complete":
        result.status = imported.status
        return result
    cursor.save({**window.__dict__, "done": True, "records": done_before + result.records})
    return result
