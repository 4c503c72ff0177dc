"""The one source of 'now'. Always UTC; replaceable in tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_now: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    return _now()


def set_clock(func: Callable[[], datetime] | None) -> None:
    global _now
    _now = func if func is not None else (lambda: datetime.now(UTC))


def iso(value: datetime) -> str:
    """ISO-8601 in UTC with a Z suffix and second precision, e.g. 2024-05-01T10:00:00Z."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: every time inside CallBridge is UTC-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return parsed.astimezone(UTC)


# The times a PBX may tell us of a call: none before this, none later than a day after our own
# now (clocks drift, time zones are misread). A time outside is junk, like an unparseable one: it
# would overflow the conversion into an account's zone (year 9999) and make the call undeliverable.
EARLIEST_CALL = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=1)


def plausible(value: datetime) -> bool:
    """Whether `value` (aware) can be the time of a real call (EARLIEST_CALL .. now + LATEST_AHEAD)."""
    return EARLIEST_CALL <= value <= now() + LATEST_AHEAD
