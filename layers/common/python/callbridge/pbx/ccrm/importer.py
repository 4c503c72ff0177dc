"""Importing ccrm.pl call history (docs/ccrm.md): the scheduled poller and the backfill share it.

A window [from, to] is read page by page (`callHistory`, ≤ 1000 records a page) until a page is
short or `totalCount` is reached. Its progress - the window and the next page - is a cursor item in
the Accounts table, saved after each page is stored, so an interrupted run (a Lambda timeout, a
403 "request limit", Ctrl-C in a backfill) resumes at the page it did not finish. A page stored
twice changes nothing: every record is applied once by its uuid.

The poller's window starts `CCRM_OVERLAP_MINUTES` before the end of the previous one: records that
ccrm.pl adds after the fact (or that shifted between pages while we read) are picked up by the next
poll, and de-duplicated by uuid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from callbridge.core.accounts import Account, get_account
from callbridge.core.record import FinalCall, marked, store_final_batch, store_imported
from callbridge.infra import aws, clock, secrets
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.pbx.ccrm.client import PAGE_SIZE, CcrmApi, CcrmError, Page, RateLimited
from callbridge.pbx.ccrm.protocol import (
    MARKER,
    SOURCE,
    BadRecord,
    final_call,
    message,
    note_of,
    service_of,
    utc_to_local,
)
from callbridge.store.cursors import load_cursor as load_cursor
from callbridge.store.cursors import put_message_once, save_cursor

if TYPE_CHECKING:
    from callbridge.pbx.ccrm.settings import CcrmSettings

POLL_CURSOR = "ccrm"  # the poller's cursor name (store/cursors.py)
_WORKERS = 8


@dataclass
class ImportResult:
    status: str = "complete"  # complete | rate_limited
    pages: int = 0
    records: int = 0
    stored: int = 0  # calls new to us
    messages: int = 0  # SMS/FAX records kept
    skipped: int = 0  # internal calls, SMS/FAX not configured, records without a uuid
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "counts"}


@dataclass
class Window:
    """Where an import stands: a UTC window and the next page to read."""

    date_from: str
    date_to: str
    page: int = 1

    @classmethod
    def of(cls, data: dict[str, Any]) -> Window:
        return cls(str(data["date_from"]), str(data["date_to"]), int(data.get("page") or 1))


# -- the API of an account ------------------------------------------------------------------------


def _settings(account: Account) -> CcrmSettings:
    from callbridge.pbx.ccrm.settings import CcrmSettings

    pbx = account.settings.pbx
    if not isinstance(pbx, CcrmSettings):
        raise TypeError(f"account {account.id} is not a ccrm.pl account")
    return pbx


def api_for(account: Account) -> CcrmApi:
    key = secrets.account_secrets(account.id, under=secrets.PBX, version=account.version).get(
        secrets.pbx_secret_name("api_key"), ""
    )
    if not key:
        raise CcrmError("callHistory", "the account has no api_key in SSM")
    return CcrmApi(base_url=_settings(account).base_url, api_key=key, trusted_hosts=account.settings.pbx.trusted_hosts)


def _with_backoff(call: Callable[[], Any], *, retries: int, base_s: float, sleep: Callable[[float], None]) -> Any:
    """`call`, tried again after a request-limit answer: after Retry-After when given, else after
    base_s, 2·base_s, … (at most `retries` more tries). RateLimited escapes when they are used up."""
    for attempt in range(retries + 1):
        try:
            return call()
        except RateLimited as limited:
            if attempt == retries:
                raise
            delay = limited.retry_after if limited.retry_after is not None else base_s * 2**attempt
            logger().warning("ccrm.pl request limit, backing off", extra={"delay_s": delay, "attempt": attempt + 1})
            sleep(min(delay, 60.0))
    raise AssertionError("unreachable")  # pragma: no cover


# -- storing one page ---------------------------------------------------------------------------


@dataclass
class _Context:
    account: Account
    api: CcrmApi
    deliver: bool
    bulk: bool  # store-only backfill: batch writes
    retries: int
    backoff_s: float
    sleep: Callable[[float], None]
    users: list[dict[str, Any]] = field(default_factory=list)  # the account's user mapping, read once


def _notes(ctx: _Context, uuid: str) -> list[dict[str, Any]]:
    notes = _with_backoff(lambda: ctx.api.notes(uuid), retries=ctx.retries, base_s=ctx.backoff_s, sleep=ctx.sleep)
    return [n for n in (note_of(n) for n in notes if str(n.get("status") or "exist").lower() == "exist") if n]


def _to_call(ctx: _Context, record: dict[str, Any], received: datetime) -> FinalCall | None:
    notes = _notes(ctx, str(record.get("uuid"))) if str(record.get("note") or "0") not in ("0", "", "False") else None
    return final_call(
        record,
        region=ctx.account.phone_region,
        timezone=ctx.account.timezone,
        users=ctx.users,
        received=received,
        notes=notes,
    )


def _store_message(ctx: _Context, record: dict[str, Any], received: datetime) -> bool:
    kept = message(record, region=ctx.account.phone_region, timezone=ctx.account.timezone, received=received)
    return put_message_once(
        ctx.account.id,
        kept.uuid,
        {
            "account": ctx.account.id,
            "source": SOURCE,
            "service": kept.service,
            "direction": kept.direction,
            "phone": kept.phone,
            "sent_at": kept.sent_at,
            "text": kept.text,
            "created_at": clock.iso(received),
        },
    )


def store_page(ctx: _Context, records: list[dict[str, Any]], result: ImportResult) -> None:
    received = clock.now()
    pbx = _settings(ctx.account)
    keep = {"sms": pbx.import_sms, "fax": pbx.import_fax}
    seen: set[str] = set()
    wanted: list[dict[str, Any]] = []
    for record in records:
        service = service_of(record)
        uuid = str(record.get("uuid") or "")
        if not uuid:
            result.skipped += 1
            continue
        if uuid in seen:
            continue
        seen.add(uuid)
        if service == "call":
            wanted.append(record)
        elif keep.get(service):
            result.messages += int(_store_message(ctx, record, received))
        else:
            result.skipped += 1

    # A re-read (the overlap, a resumed page) costs one batch read, not a note fetch and a write each.
    known = {call_id for call_id, _ in marked(ctx.account.id, [(str(r["uuid"]), MARKER) for r in wanted])}
    wanted = [r for r in wanted if str(r["uuid"]) not in known]

    def convert(record: dict[str, Any]) -> FinalCall | None:
        try:
            return _to_call(ctx, record, received)
        except BadRecord:
            return None

    aws.dynamodb()  # create the shared client before the threads use it
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        converted = list(pool.map(convert, wanted))
        calls = [c for c in converted if c is not None]
        result.skipped += len(converted) - len(calls)
        if ctx.bulk:
            result.stored += store_final_batch(ctx.account, calls, deliver=ctx.deliver)
        else:
            result.stored += store_imported(ctx.account, calls, deliver=ctx.deliver)


# -- the window loop ----------------------------------------------------------------------------


def import_window(
    ctx: _Context,
    window: Window,
    save: Callable[[Window], None],
    *,
    progress: Callable[[Page, Window], None] | None = None,
) -> ImportResult:
    """Read `window` from its page on, storing each page and then saving the cursor."""
    result = ImportResult()
    timezone = ctx.account.timezone
    date_from = utc_to_local(clock.parse_iso(window.date_from), timezone)
    date_to = utc_to_local(clock.parse_iso(window.date_to), timezone)
    while True:
        page_number = window.page
        try:
            page = _with_backoff(
                partial(ctx.api.call_history, date_from, date_to, page_number),
                retries=ctx.retries,
                base_s=ctx.backoff_s,
                sleep=ctx.sleep,
            )
            store_page(ctx, page.records, result)
        except RateLimited:
            result.status = "rate_limited"
            save(window)  # resume at this page next time
            logger().warning("ccrm.pl request limit: import paused", extra={"page": page_number})
            return result
        result.pages += 1
        result.records += len(page.records)
        window.page = page_number + 1
        save(window)
        if progress is not None:
            progress(page, window)
        read = page_number * PAGE_SIZE
        if len(page.records) < PAGE_SIZE or (page.total_count is not None and read >= page.total_count):
            return result


def context(
    account: Account,
    *,
    api: CcrmApi | None = None,
    deliver: bool = True,
    bulk: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> _Context:
    from callbridge.pbx.ccrm.settings import CcrmUser

    settings = get_settings()
    return _Context(
        account=account,
        api=api or api_for(account),
        deliver=deliver,
        bulk=bulk,
        retries=settings.ccrm_rate_limit_retries,
        backoff_s=settings.ccrm_backoff_s,
        sleep=sleep,
        # As the protocol functions read it (callbridge.pbx.ccrm.protocol user_for_internal).
        users=[{"pbx_user": u.pbx_user, "ccrm_internal": CcrmUser.of(u).ccrm_internal} for u in account.settings.users],
    )


def poll_account(account_id: str, *, api: CcrmApi | None = None, now: datetime | None = None) -> ImportResult:
    """One scheduled poll of an account: resume the unfinished window, or read a new one from the
    end of the last (minus the overlap) to now."""
    account = get_account(account_id)
    settings = get_settings()
    now = now or clock.now()
    state = load_cursor(account.id, POLL_CURSOR)
    if state.get("date_to"):
        window = Window.of(state)
    else:
        last = state.get("polled_to")
        start = (
            clock.parse_iso(str(last)) - timedelta(seconds=settings.ccrm_overlap_s)
            if last
            else now - timedelta(seconds=settings.ccrm_first_lookback_s)
        )
        window = Window(clock.iso(start), clock.iso(now))

    def save(current: Window) -> None:
        save_cursor(account.id, POLL_CURSOR, {"polled_to": last_polled, **current.__dict__})

    last_polled = state.get("polled_to")
    # Kept before the first request: a run that fails leaves the window to the next, so no stretch
    # of time is skipped however long the source is unreachable.
    save(window)
    result = import_window(context(account, api=api), window, save)
    if result.status == "complete":
        save_cursor(account.id, POLL_CURSOR, {"polled_to": window.date_to})
    logger().info("ccrm.pl poll done", extra={"account": account.id, **result.as_dict()})
    return result


# The ScheduledJob capability of the adapter (callbridge.pbx.base).
scheduled_job = poll_account
