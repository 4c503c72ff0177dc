"""ccrm.pl as a PBX adapter (callbridge.pbx.base), docs/ccrm.md: no webhooks, so no webhook secret
and nothing to paste into a cabinet; its calls come from the scheduled poll and from backfill."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from callbridge.pbx.base import BackfillCursor, BackfillOptions, BackfillResult, JobResult, PbxAdapter
from callbridge.pbx.ccrm.protocol import SOURCE

if TYPE_CHECKING:
    from callbridge.core.accounts import Account


def _poll(account_id: str) -> JobResult:
    from callbridge.pbx.ccrm.importer import poll_account

    return poll_account(account_id)


def _backfill(
    account: Account, date_from: datetime, date_to: datetime, cursor: BackfillCursor, options: BackfillOptions
) -> BackfillResult:
    from callbridge.pbx.ccrm.backfill import backfill

    return backfill(account, date_from, date_to, cursor, options)


ADAPTER = PbxAdapter(kind=SOURCE, scheduled_job=_poll, backfill=_backfill)
