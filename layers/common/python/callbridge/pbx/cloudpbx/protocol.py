"""Cloud PBX wire format, receiving side (docs/cloudpbx.md): body decoding, field validation and
the exact error bodies the PBX expects. Pure functions; no I/O."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

KIND = "cloudpbx"  # the account file's pbx.kind, callbridge.registry
MAX_FIELDS = 100
MAX_VALUE = 2048
MAX_DURATION = 10 * 24 * 3600
EVENT_TYPES = frozenset({"INCOMING", "ACCEPTED", "COMPLETED", "CANCELLED", "OUTGOING", "TRANSFERRED"})


class CloudPbxError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message}


def invalid_parameters() -> CloudPbxError:
    return CloudPbxError(400, "Invalid parameters")


def invalid_token() -> CloudPbxError:
    return CloudPbxError(401, "Invalid token")


def decode_body(body: str | None, is_base64: bool, content_type: str) -> dict[str, str]:
    """Form-encoded (the documentation's format) or JSON with the same fields. Scalars become strings, the
    first value of a repeated form field wins, anything else is a 400."""
    if not body:
        return {}
    raw: str | bytes = body
    if is_base64:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_parameters() from None
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid_parameters() from None
    text = raw.strip()
    ctype = content_type.lower()
    if "json" in ctype or (not ctype.startswith("application/x-www-form-urlencoded") and text.startswith("{")):
        return _from_json(text)
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise invalid_parameters() from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key.strip(), value)
    return fields


def _from_json(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise invalid_parameters() from None
    if not isinstance(data, dict) or len(data) > MAX_FIELDS:
        raise invalid_parameters()
    fields: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, bool):
            fields[key] = "1" if value else "0"
        elif isinstance(value, str | int | float):
            fields[key] = str(value)
        elif value is not None:
            raise invalid_parameters()
    return fields


def _text(fields: dict[str, str], name: str, *, required: bool, limit: int = MAX_VALUE) -> str | None:
    value = fields.get(name)
    value = value.strip() if value is not None else ""
    if not value:
        if required:
            raise invalid_parameters()
        return None
    if len(value) > limit or "\x00" in value:
        raise invalid_parameters()
    return value


def _duration(fields: dict[str, str], name: str, *, required: bool) -> int | None:
    raw = _text(fields, name, required=required, limit=32)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise invalid_parameters() from None
    if not math.isfinite(value) or value < 0 or value > MAX_DURATION:
        raise invalid_parameters()
    return int(value)


def parse_start(raw: str | None) -> datetime | None:
    """`start` as real PBXs send it: compact UTC `20170703T121110Z`, or ISO-8601 with an offset.
    Unparseable → None (the caller flags the call and derives the start another way)."""
    if not raw:
        return None
    for fmt in ("%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S%z"):
        try:
            return (
                datetime.strptime(raw, fmt).replace(tzinfo=UTC)
                if fmt.endswith("Z")
                else (datetime.strptime(raw, fmt).astimezone(UTC))
            )
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


@dataclass(frozen=True, slots=True)
class HistoryIn:
    direction: str  # "in" | "out"
    user: str
    phone: str
    callid: str
    status: str
    duration: int
    diversion: str | None = None
    link: str | None = None
    start_raw: str | None = None
    ext: str | None = None
    telnum: str | None = None
    department: str | None = None
    rating: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventIn:
    type: str  # upper case; may be a type we don't know (kept, not acted on)
    user: str
    phone: str
    callid: str
    diversion: str | None = None
    direction: str | None = None
    ext: str | None = None
    telnum: str | None = None
    department: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContactIn:
    phone: str
    callid: str
    diversion: str | None = None


@dataclass(frozen=True, slots=True)
class RatingIn:
    callid: str
    rating: str
    user: str | None = None
    phone: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


def _direction(raw: str | None, *, required: bool) -> str | None:
    if raw is None:
        if required:
            raise invalid_parameters()
        return None
    value = raw.lower()
    if value not in ("in", "out"):
        raise invalid_parameters()
    return value


def parse_history(fields: dict[str, str], raw: dict[str, str]) -> HistoryIn:
    direction = _direction(_text(fields, "type", required=True), required=True)
    assert direction is not None
    return HistoryIn(
        direction=direction,
        user=_str(fields, "user"),
        phone=_present(fields, "phone", limit=64),
        callid=_str(fields, "callid", limit=256),
        status=_str(fields, "status", limit=64),
        duration=_duration(fields, "duration", required=True) or 0,
        diversion=_text(fields, "diversion", required=False, limit=64),
        link=_text(fields, "link", required=False),
        start_raw=_text(fields, "start", required=False, limit=64),
        ext=_text(fields, "ext", required=False, limit=64),
        telnum=_text(fields, "telnum", required=False, limit=64),
        department=_text(fields, "groupRealName", required=False, limit=256),
        rating=_text(fields, "rating", required=False, limit=16),
        raw=raw,
    )


def parse_event(fields: dict[str, str], raw: dict[str, str]) -> EventIn:
    return EventIn(
        type=_str(fields, "type", limit=32).upper(),
        user=_str(fields, "user"),
        phone=_str(fields, "phone", limit=64),
        callid=_str(fields, "callid", limit=256),
        diversion=_text(fields, "diversion", required=False, limit=64),
        direction=_direction(_text(fields, "direction", required=False), required=False),
        ext=_text(fields, "ext", required=False, limit=64),
        telnum=_text(fields, "telnum", required=False, limit=64),
        department=_text(fields, "groupRealName", required=False, limit=256),
        raw=raw,
    )


def parse_contact(fields: dict[str, str]) -> ContactIn:
    return ContactIn(
        phone=_str(fields, "phone", limit=64),
        callid=_str(fields, "callid", limit=256),
        diversion=_text(fields, "diversion", required=False, limit=64),
    )


def parse_rating(fields: dict[str, str], raw: dict[str, str]) -> RatingIn:
    return RatingIn(
        callid=_str(fields, "callid", limit=256),
        rating=_str(fields, "rating", limit=16),
        user=_text(fields, "user", required=False),
        phone=_text(fields, "phone", required=False, limit=64),
        raw=raw,
    )


def _present(fields: dict[str, str], name: str, limit: int) -> str:
    """A field that must be sent but may be empty: a history's `phone` is empty for a withheld
    caller id, and that call happened (docs/cloudpbx.md, "What is stored"). Missing is still a 400:
    the vendor documentation requires the field (docs/protocols/cloudpbx.md)."""
    if name not in fields:
        raise invalid_parameters()
    return _text(fields, name, required=False, limit=limit) or ""


def _str(fields: dict[str, str], name: str, limit: int = 256) -> str:
    value = _text(fields, name, required=True, limit=limit)
    assert value is not None
    return value


def json_safe(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, sort_keys=True)


# -- CRM → PBX `history`: the call history as CSV (docs/protocols/cloudpbx.md, "Beyond the basic
# protocol"). One call a line, no header: uid,type,client,account,via,start,wait,duration,record;
# `type` is in | out | missed; `start` is ISO-8601 with the PBX's offset; `record` may be empty.
# Public clients show a tenth column (a quality rating) on some platforms: accepted, kept raw.
HISTORY_COLUMNS = ("uid", "type", "client", "account", "via", "start", "wait", "duration", "record")
HISTORY_TYPES = frozenset({"in", "out", "missed"})


def compact_utc(moment: datetime) -> str:
    """The PBX's request time format: UTC `YYYYmmddTHHMMSSZ`."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One CSV line of the PBX's call history."""

    uid: str
    type: str  # in | out | missed
    client: str
    account: str  # the user who talked, a group, or `ivr` / `fax` when no user was reached
    via: str | None
    start: datetime  # UTC
    wait: int
    duration: int
    record: str | None
    line: int
    raw: dict[str, str] = field(default_factory=dict)

    @property
    def direction(self) -> str:
        return "out" if self.type == "out" else "in"


@dataclass(frozen=True, slots=True)
class MalformedLine:
    line: int  # 1-based line number in the answer
    reason: str  # what is wrong, never the line itself (it holds phone numbers)


def decode_history(body: bytes) -> str:
    """The answer's text: UTF-8 (a byte-order mark is dropped); a PBX that answers in Windows-1251
    (the platform's Russian default elsewhere) is read as such rather than refused."""
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return body.decode("cp1251", errors="replace")


def parse_history_csv(text: str) -> tuple[list[HistoryRow], list[MalformedLine]]:
    """The rows of a `history` answer and the lines that could not be read. A bad line is reported
    and skipped: the other calls of the answer still count."""
    import csv

    rows: list[HistoryRow] = []
    bad: list[MalformedLine] = []
    lines = text.splitlines()
    for number, values in enumerate(csv.reader(lines), start=1):
        if not values or all(not v.strip() for v in values):
            continue
        if number == 1 and [v.strip().lower() for v in values[: len(HISTORY_COLUMNS)]] == list(HISTORY_COLUMNS):
            continue  # a header line, as some platforms write one
        row, reason = _history_row(values, number)
        if row is None:
            bad.append(MalformedLine(number, reason))
        else:
            rows.append(row)
    return rows, bad


def _history_row(values: list[str], number: int) -> tuple[HistoryRow | None, str]:
    if len(values) < len(HISTORY_COLUMNS):
        return None, f"{len(values)} columns, {len(HISTORY_COLUMNS)} expected"
    cells = [v.strip() for v in values]
    raw = dict(zip(HISTORY_COLUMNS, cells, strict=False))
    if len(cells) > len(HISTORY_COLUMNS):
        raw["extra"] = ",".join(cells[len(HISTORY_COLUMNS) :])
    uid, kind, client, account, via, start_raw, wait_raw, duration_raw, record = cells[: len(HISTORY_COLUMNS)]
    if not uid or len(uid) > 256:
        return None, "no uid"
    if kind.lower() not in HISTORY_TYPES:
        return None, "unknown type"
    start = _iso_start(start_raw)
    if start is None:
        return None, "start is not an ISO-8601 time with an offset"
    wait, duration = _seconds(wait_raw), _seconds(duration_raw)
    if wait is None or duration is None:
        return None, "wait or duration is not a number of seconds"
    if not account or len(account) > MAX_VALUE or len(client) > 64 or len(via) > 64 or len(record) > MAX_VALUE:
        return None, "a field is missing or too long"
    return (
        HistoryRow(
            uid=uid,
            type=kind.lower(),
            client=client,
            account=account,
            via=via or None,
            start=start,
            wait=wait,
            duration=duration,
            record=record or None,
            line=number,
            raw=raw,
        ),
        "",
    )


def _iso_start(raw: str) -> datetime | None:
    """ISO-8601 with an offset (`2017-07-07T16:14:08+03:00`) or `Z`; a time without one is refused:
    the PBX's local zone is not ours to guess."""
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else None


def _seconds(raw: str) -> int | None:
    if not raw:
        return 0
    try:
        value = float(raw)
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0 or value > MAX_DURATION:
        return None
    return int(value)
