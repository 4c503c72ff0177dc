"""telediscount reconciliation (docs/telediscount.md, "Webhooks can be lost"): a scheduled job reads
`get_calls` and stores the calls of a recent window whose `finished` webhook never arrived.

A reconciled call is stored exactly like the webhook would have stored it (same call id, same
marker), so a webhook that arrives later - or a call the webhook already stored - changes nothing.
`get_calls` documents no date filter: records are kept by their `setup_time`; a record whose
setup_time is not a valid time cannot be placed in the window and is left to the webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from callbridge.core.accounts import Account, get_account
from callbridge.infra import clock, secrets
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.pbx.telediscount.client import TelediscountApi
from callbridge.pbx.telediscount.ingest import api_url, record_finished
from callbridge.pbx.telediscount.protocol import BadRecord, parse_setup_time


@dataclass
class ReconcileResult:
    records: int = 0
    in_window: int = 0
    stored: int = 0
    undated: int = 0
    rejected: int = 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def api_for(account: Account) -> TelediscountApi:
    key = secrets.account_secrets(account.id).get(secrets.pbx_secret_name("api_key"), "")
    if not key:
        raise RuntimeError("the telediscount account has no api_key in SSM")
    return TelediscountApi(api_url=api_url(account), api_key=key, trusted_hosts=account.settings.pbx.trusted_hosts)


def import_records(
    account: Account,
    records: list[dict[str, Any]],
    date_from: datetime,
    date_to: datetime,
    result: ReconcileResult,
    *,
    deliver: bool = True,
) -> None:
    """Store the records whose setup_time lies in [date_from, date_to] (reconciliation, backfill)."""
    for record in records:
        result.records += 1
        start = parse_setup_time(str(record.get("setup_time") or ""))
        if start is None:
            result.undated += 1
            continue
        if not date_from <= start <= date_to:
            continue
        result.in_window += 1
        try:
            result.stored += int(record_finished(account, record, deliver=deliver))
        except BadRecord:
            result.rejected += 1


def reconcile_account(
    account_id: str, *, api: TelediscountApi | None = None, now: datetime | None = None
) -> ReconcileResult:
    account = get_account(account_id)
    now = now or clock.now()
    window = timedelta(seconds=get_settings().telediscount_reconcile_window_s)
    records = (api or api_for(account)).get_calls()
    result = ReconcileResult()
    import_records(account, records, now - window, now, result)
    logger().info("telediscount reconciliation done", extra={"account": account.id, **result.as_dict()})
    return result
