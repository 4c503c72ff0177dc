"""Zadarma records in canonical terms (docs/protocols/zadarma.md): a notification or a statistics
line becomes a LiveEvent or a FinalCall. Pure mapping; core/record.py writes them (ingest.py).

One call is one `pbx_call_id`. Its end notification and its statistics line(s) become a FinalCall
with the same marker, so the call is stored once whichever comes first; each live notification has
its own marker (per event and extension), so a repeat changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from callbridge.core.accounts import Account
from callbridge.core.live import Live, LiveDirection, LiveEvent, Stage
from callbridge.core.phones import normalize
from callbridge.core.record import FinalCall
from callbridge.core.terms import Direction, Flag, Marker, MissedReason, Outcome, StartSource
from callbridge.infra import clock
from callbridge.pbx.zadarma.protocol import ANSWER, END, INTERNAL, KIND, OUT_END, OUT_START, RECORD, START

SOURCE = KIND
# No call lasts longer: a larger duration is junk (the bound the other PBX packages use).
MAX_DURATION = 10 * 24 * 3600
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The call item's attribute a NOTIFY_RECORD leaves: the recording's id (ingest.announced_recording).
RECORD_ID = "zadarma_record_id"


def final_marker(direction: Direction) -> Marker:
    """The one marker of a call's final record, whether its end notification or a statistics line
    reports it."""
    return Marker(SOURCE, f"final_{direction.value}", "")


# disposition (lower case) -> (outcome of an incoming call, outcome of an outgoing one, reason).
_DISPOSITIONS: dict[str, tuple[Outcome, Outcome, MissedReason | None]] = {
    "answered": (Outcome.ANSWERED, Outcome.ANSWERED, None),
    "busy": (Outcome.MISSED, Outcome.BUSY, MissedReason.BUSY),
    "cancel": (Outcome.MISSED, Outcome.NO_ANSWER, MissedReason.NO_ANSWER),
    "no answer": (Outcome.MISSED, Outcome.NO_ANSWER, MissedReason.NO_ANSWER),
    # A call the PBX could not put through: nobody could take it.
    "failed": (Outcome.MISSED, Outcome.NOT_AVAILABLE, MissedReason.UNAVAILABLE),
    "call failed": (Outcome.MISSED, Outcome.NOT_AVAILABLE, MissedReason.UNAVAILABLE),
    "unallocated number": (Outcome.MISSED, Outcome.NOT_FOUND, MissedReason.UNAVAILABLE),
    # The account's own limits refused it.
    "no money": (Outcome.MISSED, Outcome.NOT_ALLOWED, MissedReason.REJECTED),
    "no limit": (Outcome.MISSED, Outcome.NOT_ALLOWED, MissedReason.REJECTED),
    "no day limit": (Outcome.MISSED, Outcome.NOT_ALLOWED, MissedReason.REJECTED),
    "line limit": (Outcome.MISSED, Outcome.NOT_ALLOWED, MissedReason.BUSY),
    "no money, no limit": (Outcome.MISSED, Outcome.NOT_ALLOWED, MissedReason.REJECTED),
}


def outcome(direction: Direction, disposition: str) -> tuple[Outcome, MissedReason | None]:
    found = _DISPOSITIONS.get(disposition.strip().lower())
    if found is None:
        return (Outcome.MISSED if direction is Direction.IN else Outcome.UNKNOWN), MissedReason.UNKNOWN
    incoming, outgoing, reason = found
    return (incoming if direction is Direction.IN else outgoing), reason


def local_time(text: str, timezone: str) -> datetime | None:
    """A `YYYY-MM-DD HH:MM:SS` of the PBX (the cabinet's zone: the account's `timezone`) in UTC;
    None for anything else or an implausible time."""
    try:
        moment = datetime.strptime(text.strip(), _TIME_FORMAT).replace(tzinfo=ZoneInfo(timezone))
    except ValueError:
        return None
    moment = moment.astimezone(UTC)
    return moment if clock.plausible(moment) else None


def as_local(moment: datetime, timezone: str) -> str:
    """A UTC time as the API's `start` / `end` parameters take it (the cabinet's zone)."""
    return moment.astimezone(ZoneInfo(timezone)).strftime(_TIME_FORMAT)


def seconds(value: Any) -> int | None:
    """A duration in whole seconds; None when it is no such number."""
    text = "" if value is None else str(value).strip()
    if not text:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        return None
    number = int(text)
    return number if number <= MAX_DURATION else None


def is_extension(value: str) -> bool:
    """A PBX extension (three to five digits) rather than a phone number."""
    text = value.strip()
    return text.isascii() and text.isdigit() and 3 <= len(text) <= 5


def pbx_user(account: Account, internal: str) -> str:
    """The PBX user an extension is: the mapping whose pbx_user is the extension, else the one whose
    `extension` it is, else the extension itself (an unmapped user is listed, never guessed)."""
    ext = internal.strip()
    users = account.settings.users
    if any(u.pbx_user == ext for u in users):
        return ext
    return next((u.pbx_user for u in users if u.extension == ext), ext)


def recording_link(account: Account, fields: Mapping[str, str]) -> str | None:
    """Where the recordings worker asks for the call's recording (adapter.recording_fetch_url): the
    record-request method with the recording's id, or the call's; no key (the request is signed)."""
    from urllib.parse import urlencode

    from callbridge.pbx.zadarma.settings import ZadarmaSettings

    settings = account.settings.pbx
    if not isinstance(settings, ZadarmaSettings):
        raise TypeError(f"account {account.id} has no Zadarma PBX")
    rec = fields.get("call_id_with_rec", "").strip()
    query = {"call_id": rec} if rec else {"pbx_call_id": fields["pbx_call_id"]}
    return f"{settings.api_base}/v1/pbx/record/request/?{urlencode(query)}"


def recorded(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true")


def start_of(account: Account, fields: Mapping[str, str], received: datetime) -> tuple[str, StartSource, set[str]]:
    start = local_time(fields.get("call_start", ""), account.timezone)
    if start is None:
        return clock.iso(received), StartSource.FIRST_EVENT, {Flag.START_UNPARSED.value}
    return clock.iso(start), StartSource.PBX, set()


def final_call(
    account: Account, direction: Direction, fields: Mapping[str, str], received: datetime, *, recovered: bool = False
) -> FinalCall:
    """The final call of an end notification (NOTIFY_END, NOTIFY_OUT_END) or of a statistics line
    put in the same fields (`recovered`)."""
    started_at, start_source, flags = start_of(account, fields, received)
    client = fields.get("caller_id", "") if direction is Direction.IN else fields.get("destination", "")
    phone = normalize(client, account.phone_region)
    if phone.e164 is None:
        flags.add(Flag.PHONE_UNPARSED.value)
    talk = seconds(fields.get("duration"))
    extra: dict[str, Any] = {}
    if talk is None:
        flags.add(Flag.DURATION_UNPARSED.value)
        extra["duration_raw"] = str(fields.get("duration", ""))[:64]
    disposition = fields.get("disposition", "").strip()
    result, reason = outcome(direction, disposition)
    internal = fields.get("internal", "").strip()
    user = pbx_user(account, internal) if internal else None
    ours = fields.get("called_did", "").strip() if direction is Direction.IN else ""
    link = recording_link(account, fields) if recorded(fields.get("is_recorded")) else None
    if fields.get("status_code"):
        extra["status_code"] = str(fields["status_code"])[:16]
    if recovered:
        extra["recovered_from"] = "statistics"
    return FinalCall(
        call_id=fields["pbx_call_id"],
        source=SOURCE,
        marker=final_marker(direction),
        direction=direction,
        outcome=result,
        missed_reason=reason,
        phone=phone.key,
        phone_raw=phone.raw,
        started_at=started_at,
        start_source=start_source,
        duration=talk or 0,
        our_number=normalize(ours, account.phone_region).key if ours else None,
        user=user,
        extension=internal or None,
        source_status=disposition or None,
        recording_url=link,
        flags=frozenset(flags),
        raw=dict(fields),
        extra=extra,
    )


# event -> (what it changes, the card's stage, direction)
_LIVE: dict[str, tuple[Live, Stage | None, LiveDirection | None]] = {
    START: (Live.ARRIVED, None, "in"),
    INTERNAL: (Live.RINGING, "ringing", "in"),
    ANSWER: (Live.ANSWERED, None, "in"),
    OUT_START: (Live.DIALING, "ringing", "out"),
    RECORD: (Live.OTHER, None, None),
}


def live_event(account: Account, event: str, fields: Mapping[str, str], received: datetime) -> LiveEvent:
    """The canonical event of a live notification (every one but the two ends)."""
    change, stage, direction = _LIVE[event]
    internal = fields.get("internal", "").strip()
    user = pbx_user(account, internal) if internal else ""
    client = fields.get("destination", "") if event == OUT_START else fields.get("caller_id", "")
    phone = normalize(client, account.phone_region)
    started_at, _, flags = start_of(account, fields, received)
    ours = fields.get("called_did", "").strip()
    extra: dict[str, Any] = {}
    if event == RECORD:
        extra[RECORD_ID] = fields.get("call_id_with_rec", "")
    at = started_at if change in (Live.ARRIVED, Live.DIALING) else clock.iso(received)
    return LiveEvent(
        stage=stage if user else None,
        call_id=fields["pbx_call_id"],
        phone=phone.key,
        users=(user,) if user else (),
        direction=direction,
        our_number=normalize(ours, account.phone_region).key if ours else None,
        at=at,
        change=change,
        source=SOURCE,
        marker=Marker(SOURCE, event, fields.get("call_id_with_rec", "") if event == RECORD else user),
        phone_raw=phone.raw,
        extension=internal or None,
        flags=frozenset(flags) if change in (Live.ARRIVED, Live.DIALING) else frozenset(),
        extra=extra,
        raw=dict(fields),
    )


def ended_card(call: FinalCall, users: tuple[str, ...]) -> LiveEvent:
    """The card that closes a call whose final record was just stored (no state of its own)."""
    return LiveEvent(
        stage="ended",
        call_id=call.call_id,
        phone=call.phone,
        users=users,
        direction="in" if call.direction is Direction.IN else "out",
        our_number=call.our_number,
        answered=call.outcome is Outcome.ANSWERED,
        at=clock.iso(clock.now()),
    )


def direction_of(event: str) -> Direction:
    return Direction.OUT if event in (OUT_START, OUT_END) else Direction.IN


def is_end(event: str) -> bool:
    return event in (END, OUT_END)
