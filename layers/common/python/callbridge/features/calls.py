"""The call history as the CRMs and the operator read it: one implementation behind
`GET /v1/{account}/calls`, `GET /v1/{account}/calls/{callid}` and `callbridge calls list|show`.

- `CallFilter.parse` validates what a caller asks for (times, direction, outcome, phone, user);
  every mistake is a `BadQuery` with a message safe to show (the API answers 400).
- `list_calls` pages through the account's calls, newest first, by an opaque cursor. The cursor is
  signed (HMAC-SHA256) with a key derived from the account's recording signing key, over the
  account, the filter and the position: it cannot be forged, moved to another account or reused
  with other filters; any of that is a `BadQuery`.
- `call_detail` is one call with its timeline (every source record received), its deliveries per
  CRM and its recording state, with a signed playback link when the recording is stored.

Calls are shown as stored, minus the storage's own keys (`public_call`): an attribute the core adds
to calls shows up here without a change.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.phones import normalize
from callbridge.core.terms import Direction, MissedReason, Outcome
from callbridge.features.recordings.playback import signed_recording_url
from callbridge.infra import clock, secrets
from callbridge.store import call_pages
from callbridge.store.keys import CALL_SK, DELIVERY_PREFIX, EVENT_PREFIX

DEFAULT_LIMIT = 50
MAX_LIMIT = 500  # a page of calls (~300 bytes of JSON each) stays far below Lambda's 6 MB answer
MAX_CURSOR = 1024
MAX_VALUE = 256  # longest filter value read
PLAYBACK_TTL_S = 3600  # a playback link handed to a reader of the history lives an hour
_CURSOR_CONTEXT = b"callbridge/calls-cursor/v1"

# The storage's own attributes: keys and index keys, the markers of the records applied and the
# table's TTL, the raw source record (large, and its fields are the call's attributes already) and the
# S3 location of the recording (`recording` below).
_CALL_INTERNAL = frozenset({"pk", "sk", "gsi1pk", "gsi1sk", "marks", "expires_at", "history_raw", "recording"})
_DELIVERY_INTERNAL = frozenset(
    {"pk", "sk", "dlv_pk", "dlv_due", "lease_until", "lease_owner", "account", "call_id", "expires_at"}
)
_EVENT_FIELDS = ("received_at", "cmd", "type", "user")


class BadQuery(ValueError):
    """A filter, limit or cursor the caller got wrong; the message is safe to show."""


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------
def _time(name: str, text: str) -> str:
    """`text` as UTC ISO Z: a date (its midnight, UTC) or a date and time with a zone."""
    if len(text) > 40:
        raise BadQuery(f"{name} is not an ISO 8601 date or time")
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{name} is not an ISO 8601 date or time, e.g. 2026-11-01T00:00:00Z") from None
    if len(text) == 10 and text[4] == text[7] == "-":  # a date alone: its midnight UTC
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.tzinfo is None:
        raise BadQuery(f"{name} has no time zone: add Z (UTC) or an offset")
    try:
        if parsed.microsecond and name == "to":
            # Stored times have whole seconds: an end within a second includes that second's calls.
            parsed = parsed.replace(microsecond=0) + timedelta(seconds=1)
        return clock.iso(parsed)
    except OverflowError:  # year 1 or 9999 moved across midnight by its offset
        raise BadQuery(f"{name} is out of range") from None


def _choice(name: str, text: str, allowed: tuple[str, ...]) -> str:
    if text not in allowed:
        raise BadQuery(f"{name} must be one of {', '.join(allowed)}")
    return text


@dataclass(frozen=True, slots=True)
class CallFilter:
    since: str = ""  # UTC ISO Z, inclusive
    before: str = ""  # UTC ISO Z, exclusive
    direction: str = ""
    outcome: str = ""
    phone: str = ""  # E.164
    user: str = ""
    missed_reason: str = ""

    @classmethod
    def parse(cls, account: Account, raw: Mapping[str, str | None]) -> CallFilter:
        """From the API's query parameters (`from`, `to`, `direction`, `outcome`, `phone`, `user`,
        `missed_reason`; absent or empty means any)."""
        names = ("from", "to", "direction", "outcome", "phone", "user", "missed_reason")
        given = {k: (raw.get(k) or "").strip() for k in names}
        for name, value in given.items():
            if len(value) > MAX_VALUE:
                raise BadQuery(f"{name} is too long")
        since = _time("from", given["from"]) if given["from"] else ""
        before = _time("to", given["to"]) if given["to"] else ""
        if since and before and since >= before:
            raise BadQuery("from must be before to")
        direction = (
            _choice("direction", given["direction"], tuple(d.value for d in Direction)) if given["direction"] else ""
        )
        outcome = _choice("outcome", given["outcome"], tuple(o.value for o in Outcome)) if given["outcome"] else ""
        phone = ""
        if given["phone"]:
            number = normalize(given["phone"], account.phone_region).e164
            if number is None:
                raise BadQuery("phone is not a phone number")
            phone = number
        reason = given["missed_reason"]
        missed_reason = _choice("missed_reason", reason, tuple(r.value for r in MissedReason)) if reason else ""
        return cls(since, before, direction, outcome, phone, given["user"], missed_reason)

    def query(self) -> call_pages.Query:
        equal = {
            "direction": self.direction,
            "outcome": self.outcome,
            "phone": self.phone,
            "user": self.user,
            "missed_reason": self.missed_reason,
        }
        return call_pages.Query(self.since, self.before, {k: v for k, v in equal.items() if v})

    def canonical(self) -> str:
        fields = [self.since, self.before, self.direction, self.outcome, self.phone, self.user]
        # Appended only when set: a cursor signed before this filter existed stays valid.
        return json.dumps([*fields, self.missed_reason] if self.missed_reason else fields)


# ---------------------------------------------------------------------------------------------
# The cursor
# ---------------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cursor_key(account_id: str) -> bytes:
    """A key of its own for cursors, derived from the account's recording signing key, so that a
    cursor's MAC is never a valid recording signature (nor the other way round)."""
    key = secrets.account_secret(account_id, secrets.RECORDINGS_SIGNING_KEY)
    if not key:
        raise LookupError(f"account {account_id} has no signing key: apply its account file")
    return hmac.new(key.encode(), _CURSOR_CONTEXT, hashlib.sha256).digest()


def _mac(key: bytes, account_id: str, where: CallFilter, payload: str) -> bytes:
    message = "\n".join((account_id, where.canonical(), payload)).encode()
    return hmac.new(key, message, hashlib.sha256).digest()


def encode_cursor(account_id: str, where: CallFilter, position: call_pages.IndexKey) -> str:
    payload = _b64(json.dumps([position.pk, position.gsi1sk], separators=(",", ":")).encode())
    return f"{payload}.{_b64(_mac(_cursor_key(account_id), account_id, where, payload))}"


def decode_cursor(account_id: str, where: CallFilter, cursor: str) -> call_pages.IndexKey:
    """The position a cursor names; BadQuery when it is malformed, altered, of another account or
    of other filters (one answer for all: a prober learns nothing from which)."""
    invalid = BadQuery("cursor is invalid: pass next_cursor as given, with the same filters")
    payload, dot, mac = cursor.partition(".")
    if len(cursor) > MAX_CURSOR or not dot or not payload.isascii() or not mac.isascii():
        raise invalid
    try:
        presented = _unb64(mac)
        position = json.loads(_unb64(payload))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if not hmac.compare_digest(presented, _mac(_cursor_key(account_id), account_id, where, payload)):
        raise invalid
    if not (isinstance(position, list) and len(position) == 2 and all(isinstance(p, str) for p in position)):
        raise invalid
    key = call_pages.IndexKey(pk=position[0], gsi1sk=position[1])
    if not key.belongs_to(account_id):  # signed by us, so never; checked all the same
        raise invalid
    return key


# ---------------------------------------------------------------------------------------------
# Calls as shown
# ---------------------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    """JSON-ready: the store's string sets become sorted lists."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def public_call(item: Mapping[str, Any]) -> dict[str, Any]:
    """A stored call as readers see it: every attribute but the storage's own."""
    return {k: _plain(v) for k, v in item.items() if k not in _CALL_INTERNAL}


def recording_state(call: Mapping[str, Any]) -> str:
    """stored | unavailable (given up: see `error`) | pending (a link to fetch) | none."""
    if call.get("recording_state"):
        return str(call["recording_state"])
    return "pending" if call.get("recording_url") else "none"


@dataclass(frozen=True, slots=True)
class CallPage:
    calls: list[dict[str, Any]]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "next_cursor": self.next_cursor}


def list_calls(
    account: Account, where: CallFilter, *, limit: int = DEFAULT_LIMIT, cursor: str | None = None
) -> CallPage:
    """A page of the account's calls matching `where`, newest first. `next_cursor` is None at the
    end; a page may hold fewer than `limit` calls (even none) with a cursor when a filter matched
    few of the calls one request may read."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadQuery(f"limit must be within 1..{MAX_LIMIT}")
    after = decode_cursor(account.id, where, cursor) if cursor else None
    found = call_pages.page(account.id, where.query(), limit, after)
    following = encode_cursor(account.id, where, found.resume) if found.resume else None
    return CallPage([public_call(item) for item in found.items], following)


def parse_limit(text: str | None) -> int:
    if not text:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 4):
        raise BadQuery(f"limit must be a whole number within 1..{MAX_LIMIT}")
    return int(text)


@dataclass(frozen=True, slots=True)
class CallDetail:
    call: dict[str, Any]
    timeline: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    recording: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "call": self.call,
            "timeline": self.timeline,
            "deliveries": self.deliveries,
            "recording": self.recording,
        }


def _event(item: Mapping[str, Any]) -> dict[str, Any]:
    event = {k: item.get(k) for k in _EVENT_FIELDS}
    raw = item.get("raw")
    try:
        event["raw"] = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        event["raw"] = raw
    return event


def _recording(
    account_id: str, call_id: str, call: Mapping[str, Any], base_url: str, now: float | None
) -> dict[str, Any]:
    state = recording_state(call)
    stored = call.get("recording") or {}
    recording: dict[str, Any] = {"state": state, "error": call.get("recording_error")}
    if state == "stored":
        recording.update(size=stored.get("size"), content_type=stored.get("content_type"))
        if base_url:
            issued = time.time() if now is None else now
            recording["playback_url"] = signed_recording_url(base_url, account_id, call_id, PLAYBACK_TTL_S, now=issued)
            recording["playback_expires_at"] = clock.iso(datetime.fromtimestamp(int(issued) + PLAYBACK_TTL_S, UTC))
    return recording


def call_detail(account: Account, call_id: str, *, base_url: str, now: float | None = None) -> CallDetail | None:
    """One call of the account, or None (unknown here: another account's call ids are unknown too).
    `base_url`: where the playback link points (our API); empty gives no link."""
    if not call_id or len(call_id) > 512:
        return None
    items = call_pages.call_items(account.id, call_id)
    call = next((i for i in items if i.get("sk") == CALL_SK), None)
    if call is None:
        return None
    events = sorted(
        (i for i in items if str(i.get("sk", "")).startswith(EVENT_PREFIX)),
        key=lambda i: (str(i.get("received_at", "")), str(i.get("sk", ""))),
    )
    deliveries = [
        {
            "crm": str(i["sk"]).removeprefix(DELIVERY_PREFIX),
            **{k: _plain(v) for k, v in i.items() if k not in _DELIVERY_INTERNAL},
        }
        for i in items
        if str(i.get("sk", "")).startswith(DELIVERY_PREFIX)
    ]
    return CallDetail(
        call=public_call(call),
        timeline=[_event(e) for e in events],
        deliveries=deliveries,
        recording=_recording(account.id, call_id, call, base_url, now),
    )
