"""retailCRM call history connector: `POST /api/v5/telephony/calls/upload`, at most 50 calls per
request (docs/retailcrm.md; the client is callbridge.crm.retailcrm.api).

Fields: `date` in the account's time zone (`Y-m-d H:i:s`, as retailCRM expects), `type` in/out,
`phone`, `code` + `userId` of the manager, `result`, `duration`, `durationWaiting` (ring time, when
the PBX reports it), `externalId` = our call id (retailCRM
answers a repeat as a duplicate), `recordUrl` = our signed recordings URL (when stored, or in realtime mode still being fetched),
`externalPhone` = our number the call came through, `site`. A refused upload names the faulty calls
in `errors` (`calls[3][phone]`); when it doesn't, the batch is halved until they stand alone.

An upload has no place for a note: the notes a PBX keeps on a call (ccrm.pl) go to the customer
card of the caller's number (`customers/notes/create`) as records of their own, after the uploads.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from callbridge.core.config import UserMapping
from callbridge.core.model import Call, Note
from callbridge.core.phones import is_number
from callbridge.core.terms import Direction, Outcome
from callbridge.crm.base import (
    CONFIG_STATUSES,
    Callbacks,
    CallbackTasks,
    CallRecords,
    CrmPackage,
    DeliveryContext,
    LiveCards,
    ModuleRegistration,
    Record,
    RecordResult,
    ResponsibleLookup,
    is_missed_incoming,
    send_batch,
)
from callbridge.crm.retailcrm.api import UPLOAD_LIMIT, RetailCrmApi, RetailCrmError
from callbridge.crm.retailcrm.settings import RetailCrmSettings
from callbridge.crm.retailcrm.users import retailcrm_code, retailcrm_user_id
from callbridge.infra.http import RetryPolicy, TransientHttpError

DEFAULT_USER = "default_user"
NO_NUMBER = "the call has no client number (withheld caller id); retailCRM files calls by phone"
RESULTS = {
    Outcome.ANSWERED: "answered",
    Outcome.MISSED: "no answer",
    Outcome.NO_ANSWER: "no answer",
    Outcome.BUSY: "busy",
    Outcome.NOT_AVAILABLE: "failed",
    Outcome.NOT_ALLOWED: "not allowed",
    Outcome.NOT_FOUND: "failed",
    Outcome.UNKNOWN: "unknown",
}
_INDEX = re.compile(r"(?:^|\[)(\d+)(?:\]|$)")
NOTES = "customer-notes"  # the records (group) of a call's notes: customer notes, not the upload


def note_mark(call_id: str, n: int) -> str:
    return f"{call_id}, {n}"


def faulty_indexes(errors: Any, size: int) -> set[int]:
    """Indexes of the calls retailCRM's `errors` names (`calls[3][phone]` or `3`)."""
    keys = errors.keys() if isinstance(errors, dict) else []
    found = set()
    for key in keys:
        match = _INDEX.search(str(key))
        if match and int(match.group(1)) < size:
            found.add(int(match.group(1)))
    return found


class RetailCrmConnector:
    kind = "retailcrm"
    max_batch = UPLOAD_LIMIT
    takes_recording_link = True

    def __init__(
        self,
        settings: RetailCrmSettings,
        ctx: DeliveryContext,
        api_key: str,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
        api: RetailCrmApi | None = None,
    ):
        self.settings = settings
        self.ctx = ctx
        self.api = api or RetailCrmApi(
            settings.base_url, api_key, timeout_s=timeout_s, retry=retry, trusted_hosts=settings.trusted_hosts
        )
        self._zone = ZoneInfo(ctx.timezone)

    def close(self) -> None:
        self.api.close()

    def _ids(self, mapping: UserMapping | None) -> tuple[int | None, str | None]:
        if mapping is None:
            return None, None
        return retailcrm_user_id(mapping), retailcrm_code(mapping)

    def manager(self, call: Call) -> tuple[int | None, str | None, bool]:
        """(userId, code, defaulted) of the manager the call belongs to. A missed call (one call,
        whoever's phones rang) goes to the caller's responsible manager, else the account's owner of
        missed calls, else `default_user_id`; only without any of them to the first mapped user
        whose phone rang."""
        if is_missed_incoming(call):
            default: tuple[int | None, str | None] | None = (
                (self.settings.default_user_id, None) if self.settings.default_user_id is not None else None
            )
            found, defaulted = self.ctx.missed_call_owner(call, self._named, default)
            return (*found, defaulted) if found is not None else (None, None, True)
        user_id, code = self._ids(self.ctx.user(call.user))
        if user_id is not None or code:
            return user_id, code, False
        return self.settings.default_user_id, None, True

    def _named(self, mapping: UserMapping) -> tuple[int | None, str | None] | None:
        """(userId, code) of a user retailCRM knows; None for one it does not."""
        user_id, code = self._ids(mapping)
        return (user_id, code) if user_id is not None or code else None

    def records(self, call: Call, recording: bool) -> CallRecords:
        user_id, code, defaulted = self.manager(call)
        flags = frozenset({DEFAULT_USER}) if defaulted else frozenset()
        phone = call.phone or call.phone_raw or ""
        if not is_number(phone):
            # `phone` is the one field that ties an uploaded call to a customer, and the upload
            # validates it per call (docs/protocols/retailcrm.md, "telephony/calls/upload" and the
            # `calls[N][phone]` errors): a withheld caller id is not sent, and that is no failure.
            return CallRecords([], not_applicable=NO_NUMBER, flags=flags)
        if call.started_at is None:
            return CallRecords([], rejected="the call has no start time", flags=flags)
        payload: dict[str, Any] = {
            "date": call.started_at.astimezone(self._zone).strftime("%Y-%m-%d %H:%M:%S"),
            "type": "out" if call.direction == Direction.OUT else "in",
            "phone": phone,
            "result": RESULTS.get(call.outcome or Outcome.UNKNOWN, "unknown"),
            "duration": int(call.duration),
            "externalId": call.call_id,
        }
        if call.waiting_time is not None:
            payload["durationWaiting"] = int(call.waiting_time)  # only where the PBX reports ring time
        if user_id is not None:
            payload["userId"] = user_id
        if code:
            payload["code"] = code
        if recording:
            payload["recordUrl"] = self.ctx.recording_url(call.call_id)
        if call.our_number:
            payload["externalPhone"] = call.our_number
        if self.settings.site:
            payload["site"] = self.settings.site
        records = [Record(call.call_id, "", payload)]
        if self.settings.call_notes:
            records += [
                Record(call.call_id, NOTES, {"phone": phone, "text": self.note_text(call, n, note)})
                for n, note in enumerate(call.notes, 1)
            ]
        return CallRecords(records, flags=flags)

    def note_text(self, call: Call, n: int, note: Note) -> str:
        """A call's note as a customer note: its text, who wrote it and when (the account's local
        time, as retailCRM shows dates), and a mark naming our call and the note, which makes a
        resent note recognisable (a customer note has no id of ours)."""
        written = []
        if note.author:
            written.append(note.author)
        if note.created_at is not None:
            written.append(note.created_at.astimezone(self._zone).strftime("%Y-%m-%d %H:%M"))
        byline = f"— {', '.join(written)}" if written else "—"
        return f"{note.text}\n\n{byline} (note on call {note_mark(call.call_id, n)})"

    def send(self, batch: list[Record]) -> list[RecordResult]:
        if batch and batch[0].group == NOTES:
            return [self._send_note(record) for record in batch]
        return send_batch(batch, self._attempt)

    def _send_note(self, record: Record) -> RecordResult:
        """One note on the customer cards the call's number finds. A number no customer has, has no
        card to hold it: nothing is wrong then. A note already there (a resent delivery) is not
        written twice."""
        phone, text = str(record.payload["phone"]), str(record.payload["text"])
        mark = text[text.rindex("(note on call ") :]
        try:
            customers = self.api.customer_ids(phone)
            for customer_id in customers:
                if not any(mark in existing for existing in self.api.customer_note_texts(customer_id, mark)):
                    self.api.create_customer_note(customer_id, text)
        except RetailCrmError as exc:
            if exc.status in CONFIG_STATUSES:
                reason = f"{exc.reason} (call notes need the customers scope on the API key, or call_notes: false)"
                return RecordResult("transient", f"retailCRM: {reason}")
            return RecordResult("rejected", f"retailCRM refused the call's note: {exc.reason}"[:500])
        except TransientHttpError as exc:
            return RecordResult("transient", str(exc), retry_after=exc.retry_after)
        return RecordResult("ok", detail={} if customers else {"note": "no customer has this number"})

    def _attempt(self, batch: list[Record]) -> list[RecordResult] | str:
        try:
            result = self.api.upload_calls([r.payload for r in batch])
        except RetailCrmError as exc:
            if exc.status in CONFIG_STATUSES:
                raise TransientHttpError(exc.peer, exc.method, exc.path, exc.reason, status=exc.status) from None
            faulty = faulty_indexes(exc.errors, len(batch))
            if not faulty:
                return f"retailCRM refused the upload: {exc.reason}"
            results: list[RecordResult | None] = [None] * len(batch)
            for index in faulty:
                details = {k: v for k, v in exc.errors.items() if faulty_indexes({k: v}, len(batch)) == {index}}
                results[index] = RecordResult("rejected", f"retailCRM: {exc.reason}: {details}"[:500])
            rest = [r for i, r in enumerate(batch) if results[i] is None]
            rest_results = iter(self.send(rest))
            return [r if r is not None else next(rest_results) for r in results]
        duplicates = set(result.duplicates)
        return [RecordResult("ok", detail={"duplicate": True} if r.delivery in duplicates else {}) for r in batch]


PACKAGE = CrmPackage(
    connector=RetailCrmConnector,
    capabilities={
        LiveCards: "cards",
        ResponsibleLookup: "managers",
        Callbacks: "callbacks",
        ModuleRegistration: "registration",
        CallbackTasks: "tasks",
    },
)
