"""telediscount backfill (features/backfill.py): `get_calls` has no date filter and no paging, so
the records of the range are kept in a stable order and the cursor is an offset into them."""

from __future__ import annotations

from datetime import datetime

from callbridge.core.accounts import Account
from callbridge.core.record import FinalCall, store_final_batch
from callbridge.infra import clock
from callbridge.pbx.base import BackfillCursor, BackfillOptions, BackfillResult
from callbridge.pbx.telediscount.ingest import record_url, users_of
from callbridge.pbx.telediscount.protocol import BadRecord, final_call, parse_setup_time
from callbridge.pbx.telediscount.reconcile import ReconcileResult, api_for, import_records

_CHUNK = 1000


def backfill(
    account: Account, date_from: datetime, date_to: datetime, cursor: BackfillCursor, options: BackfillOptions
) -> BackfillResult:
    records = (options.api or api_for(account)).get_calls()
    # Sorted so that the saved offset means the same records when an interrupted run starts again.
    dated = [(parse_setup_time(str(r.get("setup_time") or "")), r) for r in records]
    chosen = sorted(
        ((start, r) for start, r in dated if start is not None and date_from <= start <= date_to),
        key=lambda pair: (pair[0], str(pair[1].get("api_call_id"))),
    )
    offset = int(cursor.state.get("offset") or 0)
    result = BackfillResult("complete", resumed_at=offset)
    received = clock.now()
    for start in range(offset, len(chosen), _CHUNK):
        chunk = [r for _, r in chosen[start : start + _CHUNK]]
        if options.deliver:
            counts = ReconcileResult()
            import_records(account, chunk, date_from, date_to, counts, deliver=True)
            result.stored += counts.stored
        else:
            calls: list[FinalCall] = []
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
            result.stored += store_final_batch(account, calls, deliver=False)
        result.records += len(chunk)
        cursor.save({"offset": start + len(chunk), "done": False})
        if options.progress is not None:
            options.progress(start + len(chunk), len(chosen))
    cursor.save({"offset": len(chosen), "done": True, "records": len(chosen)})
    return result
