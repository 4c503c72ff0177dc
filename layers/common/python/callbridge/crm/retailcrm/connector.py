"""retailCRM call history connector: `POST /api/v5/telephony/calls/upload`, at most 50 calls per
request (docs/retailcrm.md; the client is callbridge.crm.retailcrm.api).

Fields: `date` in the account's time zone (`Y-m-d H:i:s`, as retailCRM expects), `type` in/out,
`phone`, `code` + `userId` of the manager, `result`, `duration`, `externalId` = our call id (retailCRM
answers a repeat as a duplicate), `recordUrl` = our signed recordings URL (only when stored),
`externalPhone` = our number the call came through, `site`. A refused upload names the faulty calls
in `errors` (`calls[3][phone]`); when it doesn't, the batch is halved until they stand alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings, UserMapping
from callbridge.core.model import Call, Direction, Outcome
from callbridge.core.phones import is_number
from callbridge.crm.base import (
    CONFIG_STATUSES,
    Callback,
    CallRecords,
    DeliveryContext,
    Record,
    RecordResult,
    Responsible,
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

    # Optional capabilities (callbridge.crm.base), each in its own module, loaded when used.
    @staticmethod
    def send_live(account: Account, settings: CrmSettings, message: dict[str, Any]) -> bool:
        from callbridge.crm.retailcrm.cards import send_live

        return send_live(account, settings, message)

    @staticmethod
    def lookup_responsible(account: Account, settings: CrmSettings, e164: str, timeout_s: float) -> Responsible:
        from callbridge.crm.retailcrm.managers import lookup_responsible

        return lookup_responsible(account, settings, e164, timeout_s)

    @staticmethod
    def read_callback(query: Mapping[str, str]) -> Callback:
        from callbridge.crm.retailcrm.callbacks import read_callback

        return read_callback(query)

    @staticmethod
    def callback_user(users: Sequence[UserMapping], callback: Callback) -> UserMapping | None:
        from callbridge.crm.retailcrm.callbacks import callback_user

        return callback_user(users, callback)

    @staticmethod
    def register_module(account: Account, settings: CrmSettings, base_url: str) -> dict[str, Any]:
        from callbridge.crm.retailcrm.registration import register_module

        return register_module(account, settings, base_url)

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

    def manager(self, call: Call) -> tuple[int | None, str | None, bool]:
        """(userId, code, defaulted) of the manager the call belongs to."""
        missed = call.direction != Direction.OUT and call.outcome != Outcome.ANSWERED
        candidates = sorted(call.users_rang) if missed and call.users_rang else [call.user or ""]
        for pbx_user in candidates:
            mapping = self.ctx.user(pbx_user)
            if mapping is None:
                continue
            user_id, code = retailcrm_user_id(mapping), retailcrm_code(mapping)
            if user_id is not None or code:
                return user_id, code, False
        return self.settings.default_user_id, None, True

    def records(self, call: Call, recording_stored: bool) -> CallRecords:
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
        if user_id is not None:
            payload["userId"] = user_id
        if code:
            payload["code"] = code
        if recording_stored:
            payload["recordUrl"] = self.ctx.recording_url(call.call_id)
        if call.our_number:
            payload["externalPhone"] = call.our_number
        if self.settings.site:
            payload["site"] = self.settings.site
        return CallRecords([Record(call.call_id, "", payload)], flags=flags)

    def send(self, batch: list[Record]) -> list[RecordResult]:
        return send_batch(batch, self._attempt)

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


CONNECTOR = RetailCrmConnector
