"""telediscount records (docs/telediscount.md, "Webhooks" and `get_calls`) → canonical calls.

The `finished` webhook and a `get_calls` record describe the same call with the same fields, so both
become a FinalCall with the same marker: whichever arrives first stores the call, the other changes
nothing. Every field may be missing or malformed (the documentation is a damaged copy): nothing here raises
on a bad value except a missing `api_call_id`, without which a call cannot be identified.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from callbridge.core.phones import normalize
from callbridge.core.record import FinalCall
from callbridge.core.terms import Direction, Flag, Marker, MissedReason, Outcome, StartSource
from callbridge.infra import clock
from callbridge.infra.observability import redact

SOURCE = "telediscount"
FINISHED = Marker(SOURCE, "finished", "")
INCOMING = Marker(SOURCE, "incoming", "")
DIALLED = Marker(SOURCE, "dialled", "")  # our click-to-call `outcome`, accepted
_CALL_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_SIP = re.compile(r"^sip/", re.IGNORECASE)
# No call lasts or rings longer (the same bound as the Cloud PBX's, pbx/cloudpbx/protocol.py): a
# larger value is junk, and would overflow timedelta or DynamoDB's 38-digit numbers.
MAX_DURATION = 10 * 24 * 3600


class BadRecord(ValueError):
    """A record we cannot store (no usable api_call_id); the message is safe to show and log."""


def parse_setup_time(raw: str | None) -> datetime | None:
    """10 digits are UNIX seconds, 13 milliseconds; anything else (the documentation's own 14-digit
    example) is not a time we can trust, and neither is an implausible one (clock.plausible: year
    9999 fits in 13 digits)."""
    text = (raw or "").strip()
    # ASCII only: str.isdigit() also accepts '²' and other Unicode digits, which int() refuses.
    if not (text.isascii() and text.isdigit()):
        return None
    if len(text) == 10:
        start = datetime.fromtimestamp(int(text), UTC)
    elif len(text) == 13:
        start = datetime.fromtimestamp(int(text) / 1000, UTC).replace(microsecond=0)
    else:
        return None
    return start if clock.plausible(start) else None


def is_sip(value: str) -> bool:
    return bool(_SIP.match(value.strip()))


def sip_digits(value: str) -> str:
    """`SIP/00000000672` and `SIP/0000000672` are the same account: compare digits without zeros."""
    digits = "".join(ch for ch in _SIP.sub("", value.strip()) if ch.isdigit())
    return digits.lstrip("0") or digits


def user_for_sip(users: list[dict[str, Any]], sip_account: str) -> str | None:
    """The pbx_user whose configured sip_account is `sip_account`; None when nobody's is."""
    wanted = sip_digits(sip_account)
    if not wanted:
        return None
    for user in users:
        configured = user.get("sip_account")
        if configured and sip_digits(str(configured)) == wanted:
            return str(user.get("pbx_user"))
    return None


def _seconds(value: Any) -> int | None:
    """A talk or ring time in whole seconds: missing is 0; None when it is no number of seconds
    (text, NaN, a 400-digit number that int(float()) overflows on, more than MAX_DURATION)."""
    text = "" if value is None else str(value).strip()
    if not text:
        return 0
    try:
        number = float(text[:32])
    except ValueError:
        return None
    if len(text) > 32 or not math.isfinite(number) or number > MAX_DURATION:
        return None
    return max(0, int(number))


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    return "" if value is None else str(value).strip()


def call_id_of(fields: Mapping[str, Any]) -> str:
    call_id = _text(fields, "api_call_id")
    if not _CALL_ID.match(call_id):
        raise BadRecord("api_call_id is missing or malformed")
    return call_id


@dataclass(frozen=True)
class Incoming:
    call_id: str
    phone: str
    phone_raw: str
    our_number: str | None
    started_at: str
    start_source: StartSource
    flags: frozenset[str]
    setup_time_raw: str
    raw: dict[str, Any]


def parse_incoming(fields: Mapping[str, Any], region: str, received: datetime) -> Incoming:
    call_id = call_id_of(fields)
    phone = normalize(_text(fields, "num_a"), region)
    flags = set() if phone.e164 else {Flag.PHONE_UNPARSED.value}
    start = parse_setup_time(_text(fields, "setup_time"))
    if start is None:
        flags.add(Flag.START_UNPARSED.value)
    num_m = _text(fields, "num_m")
    return Incoming(
        call_id=call_id,
        phone=phone.key,
        phone_raw=phone.raw,
        our_number=normalize(num_m, region).key if num_m else None,
        started_at=clock.iso(start or received),
        start_source=StartSource.PBX if start else StartSource.FIRST_EVENT,
        flags=frozenset(flags),
        setup_time_raw=_text(fields, "setup_time"),
        raw=redact(dict(fields)),
    )


def final_call(
    fields: Mapping[str, Any],
    *,
    region: str,
    users: list[dict[str, Any]],
    received: datetime,
    record_url: str | None = None,
) -> FinalCall | None:
    """A `finished` webhook or a `get_calls` record as a final call; None for internal calls
    (SIP to SIP), which are no client's call. `record_url`: where get_record serves this call's
    recording, without the key; kept only for answered calls."""
    call_id = call_id_of(fields)
    num_a, num_b = _text(fields, "num_a"), _text(fields, "num_b")
    service = _text(fields, "service_name").lower()
    if service == "sip_internal" or (is_sip(num_a) and is_sip(num_b)):
        return None
    outgoing = service == "sip_outcome" or is_sip(num_a)
    direction = Direction.OUT if outgoing else Direction.IN
    client_raw, sip = (num_b, num_a) if outgoing else (num_a, num_b)
    phone = normalize(client_raw, region)
    flags: set[str] = set() if phone.e164 else {Flag.PHONE_UNPARSED.value}

    durations = {"connection_time": fields.get("connection_time")}
    durations["waiting_time"] = fields.get("waiting_time", fields.get("num_b_waiting_time"))
    seconds = {name: _seconds(value) for name, value in durations.items()}
    # An unreadable time still stores the call (the PBX reported it): as 0 s, flagged, kept as sent.
    unparsed = {f"{name}_raw": str(durations[name]).strip()[:64] for name, value in seconds.items() if value is None}
    if unparsed:
        flags.add(Flag.DURATION_UNPARSED.value)
    talk, waiting = seconds["connection_time"] or 0, seconds["waiting_time"] or 0
    # Ring time is kept only when the PBX reported a readable one: a CRM that shows it (retailCRM's
    # durationWaiting) must not be told 0 s for "not reported".
    waiting_reported = _text(durations, "waiting_time") != "" and seconds["waiting_time"] is not None
    answered = talk > 0
    outcome = Outcome.ANSWERED if answered else (Outcome.NO_ANSWER if outgoing else Outcome.MISSED)

    setup_raw = _text(fields, "setup_time")
    start = parse_setup_time(setup_raw)
    if start is not None:
        started_at, start_source = clock.iso(start), StartSource.PBX
    else:
        # Counted back from the receipt; core/record.py prefers the receipt of the call's first
        # event (its `incoming` webhook) when that came.
        flags.add(Flag.START_UNPARSED.value)
        started_at = clock.iso(received - timedelta(seconds=talk + waiting))
        start_source = StartSource.RECEIPT_MINUS_DURATION

    num_m = _text(fields, "num_m")
    extra: dict[str, Any] = {
        "waiting_time": waiting if waiting_reported else None,
        "setup_time_raw": setup_raw or None,
        **unparsed,
    }
    if is_sip(sip):
        extra["sip_account"] = sip
    for name in ("price", "code_name_num_a", "code_name_num_b", "service_name"):
        if _text(fields, name):
            extra[name] = _text(fields, name)
    return FinalCall(
        call_id=call_id,
        source=SOURCE,
        marker=FINISHED,
        direction=direction,
        outcome=outcome,
        # telediscount says only `connection_time=0`: nobody talked, the caller (or callee) hung up.
        missed_reason=None if answered else MissedReason.NO_ANSWER,
        phone=phone.key,
        phone_raw=phone.raw,
        our_number=normalize(num_m, region).key if num_m else None,
        user=user_for_sip(users, sip) if is_sip(sip) else None,
        duration=talk,
        started_at=started_at,
        start_source=start_source,
        recording_url=record_url if answered else None,
        flags=frozenset(flags),
        raw=redact({k: v for k, v in fields.items() if k != "abonent_api_key"}),
        extra=extra,
    )
