"""Cloud PBX call notifications (docs/cloudpbx.md): the `history`, `event` and `rating` commands'
fields, validated into plain values. Pure functions; no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from callbridge.infra import clock
from callbridge.pbx.cloudpbx.protocol import MAX_DURATION, field_text, invalid_parameters, required_text


def _duration(fields: dict[str, str], name: str, *, required: bool) -> int | None:
    raw = field_text(fields, name, required=required, limit=32)
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
    Unparseable or implausible (clock.plausible: year 9999, 1970) → None (the caller flags the call
    and derives the start another way)."""
    parsed = _parse_start(raw)
    return parsed if parsed is not None and clock.plausible(parsed) else None


def _parse_start(raw: str | None) -> datetime | None:
    if not raw:
        return None
    for fmt in ("%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S%z"):
        try:
            return (
                datetime.strptime(raw, fmt).replace(tzinfo=UTC)
                if fmt.endswith("Z")
                else (datetime.strptime(raw, fmt).astimezone(UTC))
            )
        except (ValueError, OverflowError):
            continue
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        return parsed.astimezone(UTC) if parsed.tzinfo else None
    except (ValueError, OverflowError):
        return None


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
    direction = _direction(field_text(fields, "type", required=True), required=True)
    assert direction is not None
    return HistoryIn(
        direction=direction,
        user=required_text(fields, "user"),
        phone=_present(fields, "phone", limit=64),
        callid=required_text(fields, "callid", limit=256),
        status=required_text(fields, "status", limit=64),
        duration=_duration(fields, "duration", required=True) or 0,
        diversion=field_text(fields, "diversion", required=False, limit=64),
        link=field_text(fields, "link", required=False),
        start_raw=field_text(fields, "start", required=False, limit=64),
        ext=field_text(fields, "ext", required=False, limit=64),
        telnum=field_text(fields, "telnum", required=False, limit=64),
        department=field_text(fields, "groupRealName", required=False, limit=256),
        rating=field_text(fields, "rating", required=False, limit=16),
        raw=raw,
    )


def parse_event(fields: dict[str, str], raw: dict[str, str]) -> EventIn:
    return EventIn(
        type=required_text(fields, "type", limit=32).upper(),
        user=required_text(fields, "user"),
        phone=_present(fields, "phone", limit=64),
        callid=required_text(fields, "callid", limit=256),
        diversion=field_text(fields, "diversion", required=False, limit=64),
        direction=_direction(field_text(fields, "direction", required=False), required=False),
        ext=field_text(fields, "ext", required=False, limit=64),
        telnum=field_text(fields, "telnum", required=False, limit=64),
        department=field_text(fields, "groupRealName", required=False, limit=256),
        raw=raw,
    )


def parse_rating(fields: dict[str, str], raw: dict[str, str]) -> RatingIn:
    return RatingIn(
        callid=required_text(fields, "callid", limit=256),
        rating=required_text(fields, "rating", limit=16),
        user=field_text(fields, "user", required=False),
        phone=field_text(fields, "phone", required=False, limit=64),
        raw=raw,
    )


def _present(fields: dict[str, str], name: str, limit: int) -> str:
    """A field that must be sent but may be empty: a history's or an event's `phone` is empty for a
    withheld caller id, and that call happened - a missed one only its events report
    (docs/cloudpbx.md, "What is stored"). Missing is still a 400:
    the vendor documentation requires the field (docs/protocols/cloudpbx.md)."""
    if name not in fields:
        raise invalid_parameters()
    return field_text(fields, name, required=False, limit=limit) or ""
