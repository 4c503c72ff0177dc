"""telediscount reconciliation (docs/telediscount.md, "Webhooks can be lost"): a scheduled job reads
`get_calls` and stores the calls of a recent window whose `finished` webhook never arrived.

A reconciled call is stored exactly like the webhook would have stored it (same call id, same
marker), so a webhook that arrives later - or a call the webhook already stored - changes nothing.
`get_calls` documents no date filter and no paging: without a filter it answers the account's whole
history, larger every day. So a run asks it with the filter it has, `api_call_id`, about each call
telediscount told us began (an `incoming` webhook, an accepted click-to-call) and that is not final
yet (store/open_calls.py). The whole list is read only every `TELEDISCOUNT_FULL_SWEEP_MINUTES`
(and when more calls are open than asking one by one is worth): a call both of whose webhooks were
lost, or an outgoing call dialled on a phone, is known only there. Records are kept by their
`setup_time`; one whose setup_time is not a valid time cannot be placed in the window and is left
to the webhook, unless it is a call we asked about by id.
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
from callbridge.pbx.telediscount.protocol import SOURCE, BadRecord, parse_setup_time
from callbridge.store import calls, open_calls

# More open calls than this are asked about with one read of the whole list rather than one by one.
MAX_BY_ID = 20
# A call that began this recently is most likely still ringing or talking: asked about next run.
ASK_AFTER_S = 120


@dataclass
class ReconcileResult:
    records: int = 0
    in_window: int = 0
    stored: int = 0
    undated: int = 0
    rejected: int = 0
    full_list: bool = False  # the whole list was read
    asked_by_id: int = 0  # get_calls?api_call_id=… requests

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def api_for(account: Account) -> TelediscountApi:
    key = secrets.account_secrets(account.id, under=secrets.PBX, version=account.version).get(
        secrets.pbx_secret_name("api_key"), ""
    )
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
    undated_ok: bool = False,
) -> None:
    """Store the records whose setup_time lies in [date_from, date_to] (reconciliation, backfill);
    `undated_ok`: also those without a usable setup_time (records asked for by their id)."""
    for record in records:
        result.records += 1
        start = parse_setup_time(str(record.get("setup_time") or ""))
        if start is None:
            result.undated += 1
            if not undated_ok:
                continue
        elif not date_from <= start <= date_to:
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
    settings = get_settings()
    date_from = now - timedelta(seconds=settings.telediscount_reconcile_window_s)
    settled = now - timedelta(seconds=ASK_AFTER_S)
    pending = open_calls.open_between(account.id, SOURCE, clock.iso(date_from), clock.iso(settled))
    pending = _still_open(account.id, pending)
    swept = open_calls.last_sweep(account.id, SOURCE)
    due = not swept or (now - clock.parse_iso(str(swept))).total_seconds() >= settings.telediscount_full_sweep_s
    client = api or api_for(account)
    result = ReconcileResult()
    if due or len(pending) > MAX_BY_ID:
        result.full_list = True
        import_records(account, client.get_calls(), date_from, now, result)
        open_calls.mark_sweep(account.id, SOURCE, clock.iso(now))
    else:
        for entry in pending:
            result.asked_by_id += 1
            records = [r for r in client.get_calls(api_call_id=entry.call_id) if _id(r) == entry.call_id]
            # Asked by id, a record needs no setup_time to be placed: its call began in the window.
            import_records(account, records, date_from, now, result, undated_ok=True)
    _still_open(account.id, pending)  # forgets the calls this run made final
    logger().info("telediscount reconciliation done", extra={"account": account.id, **result.as_dict()})
    return result


# The ScheduledJob capability of the adapter (callbridge.pbx.base).
scheduled_job = reconcile_account


def _id(record: dict[str, Any]) -> str:
    return str(record.get("api_call_id") or "").strip()


def _still_open(account_id: str, entries: list[open_calls.OpenCall]) -> list[open_calls.OpenCall]:
    """The entries whose call is not final; the others are forgotten."""
    final = [e for e in entries if (call := calls.get_call(account_id, e.call_id)) is not None and call.get("final")]
    if final:
        open_calls.forget(account_id, SOURCE, final)
    return [e for e in entries if e not in final]
