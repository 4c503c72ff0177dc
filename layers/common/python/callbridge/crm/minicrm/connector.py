"""MiniCRM Call log connector: `POST {base}/Api/CallLog` (docs/minicrm.md).

One request per `UserExtension` (one MiniCRM user) with `Data` as an array of records; `CallType` 0
outgoing / 1 received / 2 missed; `Date` = the call's start in UTC; a missed call is one record under its owner (`_extensions`); `ReferenceId` = our call id (the id
our MiniCRM recordings URL resolves) when the call has a recording: stored, or, in realtime mode,
still being fetched (the URL answers "not yet" until it is stored). The answer's counters come in
two documented sets (`Missing`/`NotFound`/`Processed` and `Skipped`/`Processed`/`Exists`); `Exists`
is success (MiniCRM de-duplicates), the others reject records without saying which: we then halve the
batch until the rejected records stand alone (callbridge.crm.base.isolate).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException

from callbridge.core.model import Call
from callbridge.core.phones import is_number, national_digits
from callbridge.core.terms import Direction, Outcome
from callbridge.crm.base import (
    CONFIG_STATUSES,
    OK,
    CallbackTasks,
    CallRecords,
    CrmPackage,
    DeliveryContext,
    Record,
    RecordResult,
    is_missed_incoming,
    send_batch,
)
from callbridge.crm.minicrm.settings import MiniCrmSettings, MiniCrmUser
from callbridge.infra.http import (
    HttpPeer,
    PermanentHttpError,
    RetryPolicy,
    TransientHttpError,
    UnexpectedAnswer,
    limiter,
)

PATH = "/Api/CallLog"
MAX_BATCH = 1000  # records per request: MiniCRM documents no limit; this keeps a body under ~150 kB
RATE_PER_SECOND = 5.0  # undocumented; modest, and 429/5xx are retried
REJECT_COUNTERS = ("Missing", "NotFound", "Skipped")
OK_COUNTERS = ("Processed", "Exists")
DEFAULT_USER = "default_user"
NO_NUMBER = "the call has no client number (withheld caller id); MiniCRM needs one"


def call_type(call: Call) -> int:
    if call.direction == Direction.OUT:
        return 0
    return 1 if call.outcome == Outcome.ANSWERED else 2


def _counter(answer: dict[str, Any], name: str) -> int:
    value = answer.get(name, 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


class MiniCrmConnector:
    kind = "minicrm"
    max_batch = MAX_BATCH
    takes_recording_link = True

    def __init__(
        self,
        settings: MiniCrmSettings,
        ctx: DeliveryContext,
        api_key: str,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 10.0,
    ):
        self.settings = settings
        self.ctx = ctx
        self._api_key = api_key
        base = settings.base_url.rstrip("/")
        self.peer = HttpPeer(
            "minicrm",
            base,
            retry=retry,
            timeout_s=timeout_s,
            rate_limiter=limiter(f"minicrm:{base}", RATE_PER_SECOND, burst=5),
            secrets=(api_key,),
            trusted_hosts=settings.trusted_hosts,
        )

    def close(self) -> None:
        self.peer.close()

    def _extension_of(self, pbx_user: str | None) -> str | None:
        mapping = self.ctx.user(pbx_user)
        return (MiniCrmUser.of(mapping).minicrm_extension or mapping.extension) if mapping else None

    def _extensions(self, call: Call) -> tuple[list[str], bool]:
        """The UserExtension the call is filed under, and whether the default user stood in.

        One call, one record: a missed call (a group or hunting ring nobody answered) goes to the
        caller's responsible manager, else the account's owner of missed calls, else
        `default_user_extension`; only without any of them to the first mapped user whose phone rang.
        """
        if is_missed_incoming(call):
            found, defaulted = self.ctx.missed_call_owner(
                call, lambda m: self._extension_of(m.pbx_user) or None, self.settings.default_user_extension or None
            )
            return ([found], defaulted) if found else ([], True)
        extension = self._extension_of(call.user)
        if extension:
            return [extension], False
        default = self.settings.default_user_extension
        return ([default] if default else []), True

    def number(self, stored: str) -> str:
        """`Number` as MiniCRM gets it. `national`: a number of the account's own country as it is
        dialled there, trunk prefix included (the documentation's `0620123456`); a foreign number
        stays E.164, since its national digits would lose the country. A number that is no E.164
        (kept as the PBX sent it) goes as it is."""
        if self.settings.number_format != "national" or not stored.startswith("+"):
            return stored
        try:
            parsed = phonenumbers.parse(stored, None)
        except NumberParseException:
            return stored
        if phonenumbers.region_code_for_number(parsed) != (self.ctx.phone_region or "").upper():
            return stored
        with contextlib.suppress(NumberParseException):
            return national_digits(stored)
        return stored

    def records(self, call: Call, recording: bool) -> CallRecords:
        extensions, defaulted = self._extensions(call)
        flags = frozenset({DEFAULT_USER}) if defaulted else frozenset()
        number = call.phone or call.phone_raw or ""
        if not is_number(number):
            # MiniCRM files a call under the client's Number and skips a record without one
            # (docs/protocols/minicrm.md, `Missing`/`Skipped`): a withheld caller id has no place there.
            return CallRecords([], not_applicable=NO_NUMBER, flags=flags)
        if not extensions:
            return CallRecords([], rejected="no MiniCRM user for this call and no default_user_extension", flags=flags)
        if call.started_at is None:
            return CallRecords([], rejected="the call has no start time", flags=flags)
        data: dict[str, Any] = {
            "Number": self.number(number),
            "Duration": int(call.duration),
            "CallType": call_type(call),
            "Date": call.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        }
        if recording:
            data["ReferenceId"] = call.call_id
        return CallRecords([Record(call.call_id, ext, data) for ext in extensions], flags=flags)

    def send(self, batch: list[Record]) -> list[RecordResult]:
        return send_batch(batch, self._attempt)

    def _attempt(self, batch: list[Record]) -> list[RecordResult] | str:
        extension = batch[0].group
        body = {"ApiKey": self._api_key, "UserExtension": extension, "Data": [r.payload for r in batch]}
        try:
            response = self.peer.request("POST", PATH, json=body)
        except PermanentHttpError as exc:
            if exc.status in CONFIG_STATUSES:
                raise TransientHttpError(exc.peer, exc.method, exc.path, exc.reason, status=exc.status) from None
            return f"{exc.reason}: {exc.body[:300]}"
        try:
            answer = response.json()
        except ValueError:
            answer = None
        # The documented success is a JSON object of counters, `Processed` in both sets
        # (docs/protocols/minicrm.md, "Answer"); anything else (a login page, truncated JSON) took nothing.
        if not isinstance(answer, dict) or not isinstance(answer.get("Processed"), int | str):
            raise UnexpectedAnswer(
                "minicrm", "POST", PATH, f"HTTP {response.status_code}: not MiniCRM's answer (no counters)"
            )
        rejected = sum(_counter(answer, name) for name in REJECT_COUNTERS)
        if rejected == 0:
            return [OK for _ in batch]
        counts = {k: answer[k] for k in (*REJECT_COUNTERS, *OK_COUNTERS) if k in answer}
        return "MiniCRM refused the record: " + json.dumps(counts, sort_keys=True)


PACKAGE = CrmPackage(connector=MiniCrmConnector, capabilities={CallbackTasks: "todos"})
