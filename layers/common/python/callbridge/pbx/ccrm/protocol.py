"""ccrm.pl `callHistory` records (docs/ccrm.md) → canonical calls.

`callDate` is local time of the account (ccrm.pl answers in the account's time zone: the documentation's
call is 11:24:57 in callHistory and 10:24:57 UTC in notes); it becomes UTC here. Enums are compared
case-insensitively (the documentation's table says `in`/`answered`, its example `IN`/`ANSWERED`), numbers may
be JSON numbers or strings. Only `service` CALL is a call; SMS and FAX never become calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from callbridge.core.phones import normalize
from callbridge.core.record import FinalCall
from callbridge.core.terms import Direction, Flag, Marker, MissedReason, Outcome, StartSource
from callbridge.infra import clock

SOURCE = "ccrm"
MARKER = Marker(SOURCE, "call", "")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

_STATUS = {"answered": Outcome.ANSWERED, "busy": Outcome.BUSY}
_UNANSWERED = frozenset({"noanswer", "no_answer", "missed"})


class BadRecord(ValueError):
    """A record without a usable uuid: it cannot be stored idempotently."""


@dataclass(frozen=True)
class Message:
    """An SMS or FAX record, kept (when configured) apart from calls."""

    uuid: str
    service: str
    direction: str
    phone: str
    sent_at: str
    text: str | None
    raw: dict[str, Any]


def local_to_utc(value: str, timezone: str) -> datetime | None:
    """`YYYY-MM-DD HH:MM:SS` in `timezone` as UTC; None when it is not such a time. An ambiguous
    time (the hour repeated when summer time ends) is read as the first one (fold=0), and a time
    that does not exist (the hour skipped when it begins) with the offset before the change: the
    operator's account of both is docs/ccrm.md, "Summer time changes", whose examples a test checks.
    An implausible time (clock.plausible) is None too."""
    try:
        naive = datetime.strptime(value.strip(), DATE_FORMAT)
        start = clock.parse_iso(naive.replace(tzinfo=ZoneInfo(timezone)).isoformat())
    except (ValueError, AttributeError, OverflowError):
        return None
    return start if clock.plausible(start) else None


def utc_to_local(value: datetime, timezone: str) -> datetime:
    """A UTC time as the naive local time ccrm.pl expects in dateFrom/dateTo."""
    return value.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)


def _lower(value: Any) -> str:
    return str(value or "").strip().replace(" ", "").lower()


def _number(party: Any) -> str:
    if not isinstance(party, dict):
        return ""
    for key in ("numberNotFormatted", "number"):
        if party.get(key) not in (None, ""):
            return str(party[key])
    return ""


def reason_of(status: Any, queue_status: Any) -> MissedReason | None:
    """Why a call was not answered: ccrm.pl says `noAnswer` or `busy`, and `userTalk.status` tells
    whether the caller waited in a queue (a `noAnswer` there is a caller who gave up waiting)."""
    key = _lower(status)
    if key == "answered":
        return None
    if key == "busy":
        return MissedReason.BUSY
    if key in _UNANSWERED:
        return MissedReason.QUEUE_ABANDONED if _lower(queue_status) == "queue" else MissedReason.NO_ANSWER
    return MissedReason.UNKNOWN


def outcome_of(status: Any, direction: Direction) -> Outcome:
    key = _lower(status)
    if key in _UNANSWERED:
        return Outcome.MISSED if direction == Direction.IN else Outcome.NO_ANSWER
    return _STATUS.get(key, Outcome.UNKNOWN)


def user_for_internal(users: list[dict[str, Any]], receivers: Any) -> tuple[str | None, list[str]]:
    """The first receiver whose `internal` is a user's ccrm_internal, and every receiver's internal."""
    internals = [
        str(r.get("internal")).strip() for r in receivers or [] if isinstance(r, dict) and r.get("internal") is not None
    ]
    by_internal = {str(u["ccrm_internal"]).strip(): str(u["pbx_user"]) for u in users if u.get("ccrm_internal")}
    return next((by_internal[i] for i in internals if i in by_internal), None), internals


def record_uuid(record: dict[str, Any]) -> str:
    uuid = str(record.get("uuid") or "").strip()
    if not uuid or len(uuid) > 128:
        raise BadRecord("record without a uuid")
    return uuid


def service_of(record: dict[str, Any]) -> str:
    return _lower(record.get("service")) or "call"


def message(record: dict[str, Any], *, region: str, timezone: str, received: datetime) -> Message:
    uuid = record_uuid(record)
    sent = local_to_utc(str(record.get("callDate") or ""), timezone) or received
    return Message(
        uuid=uuid,
        service=service_of(record),
        direction=_lower(record.get("callDirection")),
        phone=normalize(_number(record.get("externalNumber")), region).key,
        sent_at=clock.iso(sent),
        text=str(record["smsData"]) if record.get("smsData") is not None else None,
        raw=record,
    )


def note_of(note: dict[str, Any]) -> dict[str, Any] | None:
    """A note of `notes` as the call keeps it (core.model.Note): plain text, its author and when it
    was written, in UTC. `created` is read as UTC: the same answer gives the call's time in UTC
    (`call.callDate` 10:24:57 for a call that callHistory shows at 11:24:57 Warsaw time). None for a
    note without text."""
    from callbridge.pbx.ccrm.client import note_plain_text

    text = note_plain_text(note.get("text"))
    if not text:
        return None
    kept: dict[str, Any] = {"text": text}
    found = note.get("user")
    user: dict[str, Any] = found if isinstance(found, dict) else {}
    author = " ".join(str(user[k]).strip() for k in ("firstName", "lastName") if user.get(k))
    if author:
        kept["author"] = author
    if user.get("uuid"):
        kept["author_id"] = str(user["uuid"])
    try:
        created = datetime.strptime(str(note.get("created") or "").strip(), DATE_FORMAT).replace(tzinfo=UTC)
        kept["created_at"] = clock.iso(created)
    except ValueError:
        pass
    return kept


def final_call(
    record: dict[str, Any],
    *,
    region: str,
    timezone: str,
    users: list[dict[str, Any]],
    received: datetime,
    notes: list[dict[str, Any]] | None = None,
) -> FinalCall | None:
    """A CALL record as a final call; None for internal calls (between two extensions)."""
    uuid = record_uuid(record)
    raw_direction = _lower(record.get("callDirection"))
    if raw_direction == "internal" or _lower((record.get("userTalk") or {}).get("status")) == "internal":
        return None
    direction = Direction.OUT if raw_direction == "out" else Direction.IN
    client_party, our_party = ("to", "from") if direction == Direction.OUT else ("from", "to")
    client_raw = _number(record.get("externalNumber")) or _number(record.get(client_party))
    phone = normalize(client_raw, region)
    flags: set[str] = set() if phone.e164 else {Flag.PHONE_UNPARSED.value}
    try:
        duration = max(0, int(record.get("duration") or 0))
    except (TypeError, ValueError):
        duration = 0

    call_date = str(record.get("callDate") or "")
    start = local_to_utc(call_date, timezone)
    if start is not None:
        started_at, start_source = clock.iso(start), StartSource.PBX
    else:
        flags.add(Flag.START_UNPARSED.value)
        started_at = clock.iso(received - timedelta(seconds=duration))
        start_source = StartSource.RECEIPT_MINUS_DURATION
    user, internals = user_for_internal(users, (record.get("userTalk") or {}).get("receivers"))
    our_raw = _number(record.get(our_party))
    tags = [str(f.get("name")) for f in record.get("flags") or [] if isinstance(f, dict) and f.get("name")]
    extra: dict[str, Any] = {
        "receivers": internals or None,
        "tags": tags or None,
        "call_date_local": call_date or None,
        "notes": notes or None,
    }
    return FinalCall(
        call_id=uuid,
        source=SOURCE,
        marker=MARKER,
        direction=direction,
        outcome=outcome_of(record.get("status"), direction),
        phone=phone.key,
        phone_raw=phone.raw,
        our_number=normalize(our_raw, region).key if our_raw else None,
        user=user,
        source_status=str(record.get("status") or "") or None,
        missed_reason=reason_of(record.get("status"), (record.get("userTalk") or {}).get("status")),
        duration=duration,
        started_at=started_at,
        start_source=start_source,
        flags=frozenset(flags),
        raw=record,
        extra=extra,
    )
