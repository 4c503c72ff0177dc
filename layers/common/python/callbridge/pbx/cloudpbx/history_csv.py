"""The Cloud PBX call history as the PBX answers it (docs/protocols/cloudpbx.md, "Beyond the basic
protocol"): CSV lines read into rows, the malformed ones reported. Pure functions; no I/O."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from callbridge.infra import clock
from callbridge.pbx.cloudpbx.protocol import MAX_DURATION, MAX_VALUE

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
    if not clock.plausible(start):
        return None, "start is not a plausible time (clock.plausible)"
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
        return parsed.astimezone(UTC) if parsed.tzinfo else None
    except (ValueError, OverflowError):
        return None


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
