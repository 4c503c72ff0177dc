"""The canonical call, whatever PBX it came from. Adapters in map to it; adapters out map from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from callbridge.store.keys import event_sk


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


@dataclass(frozen=True, slots=True)
class Marker:
    """Identity of one source record (a webhook, a reconciled or imported record): the Cloud PBX
    shares a callid across all events and the history of a call, so de-duplication is per (callid,
    command, type, user). The adapter chooses it; the store keeps it as the call's EVT item."""

    cmd: str
    type: str
    user: str

    @property
    def sk(self) -> str:
        return event_sk(self.cmd, self.type, self.user)


class Outcome(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"  # incoming, nobody answered
    NO_ANSWER = "no_answer"  # outgoing, the client did not answer
    BUSY = "busy"
    NOT_AVAILABLE = "not_available"
    NOT_ALLOWED = "not_allowed"
    NOT_FOUND = "not_found"
    UNKNOWN = "unknown"


class MissedReason(StrEnum):
    """Why a call was not answered, as far as the PBX told us. Set by each PBX package's mapping
    (and by the missed-call settle of live events); None on an answered call."""

    NO_ANSWER = "no_answer"  # it rang, nobody picked up before the caller hung up
    BUSY = "busy"  # every line that could take it was busy
    REJECTED = "rejected"  # a user or a PBX rule refused it
    UNAVAILABLE = "unavailable"  # nobody available: no user logged in, outside the PBX's hours, no route
    QUEUE_ABANDONED = "queue_abandoned"  # the caller gave up while waiting in a queue
    UNKNOWN = "unknown"  # unanswered, and the PBX said nothing more


_MISSED_REASON_TEXT: dict[str, str] = {
    MissedReason.NO_ANSWER: "nobody answered",
    MissedReason.BUSY: "all lines busy",
    MissedReason.REJECTED: "rejected",
    MissedReason.UNAVAILABLE: "nobody available",
    MissedReason.QUEUE_ABANDONED: "the caller gave up in the queue",
    MissedReason.UNKNOWN: "not answered",
}


def missed_reason_text(reason: str) -> str:
    """Why a call was missed, in the words a CRM task or note shows a manager (a value we do not know
    is shown as it is)."""
    return _MISSED_REASON_TEXT.get(reason, reason)


class StartSource(StrEnum):
    """Where a call's start time came from: PBXs differ in what they tell us."""

    PBX = "pbx"  # the PBX sent it
    FIRST_EVENT = "first_event"  # receipt time of the first event (INCOMING/OUTGOING) we saw
    RECEIPT_MINUS_DURATION = "receipt_minus_duration"  # history receipt time minus the duration


class Flag(StrEnum):
    PHONE_UNPARSED = "phone_unparsed"  # the client number is not a valid number; kept as sent
    # No client number at all (a withheld caller id: empty, `anonymous`…): kept, and not sent to a
    # CRM that files calls by number (docs/delivery.md, "Not applicable").
    NO_NUMBER = "no_number"
    START_UNPARSED = "start_unparsed"  # the PBX's start time was junk; derived another way
    DURATION_UNPARSED = "duration_unparsed"  # a talk or ring time was junk; counted as 0, kept as sent
    BAD_RECORDING_LINK = "bad_recording_link"
    GROUP_USER = "group_user"  # `user` is a department: the call rang a group
    # An answered call recorded from its live events because the source's final record did not come
    # within the quiet time (talk time from the answer and end receipts); a later final record of
    # the source corrects it in place and drops the flag.
    DERIVED_FROM_EVENTS = "derived_from_events"
    # The caller's number and recording were erased on request (features/erasure.py); the call is
    # kept for the figures, without them.
    ERASED = "erased"


class Note(BaseModel):
    """A note a PBX keeps about a call (ccrm.pl's notes): its text, who wrote it and when (UTC)."""

    model_config = ConfigDict(extra="ignore")

    text: str
    author: str | None = None  # the author's name, as the PBX has it
    author_id: str | None = None  # the author's id in the PBX
    created_at: datetime | None = None


class Call(BaseModel):
    """A call as stored (the CALL item of the calls table)."""

    model_config = ConfigDict(extra="ignore")

    account: str
    call_id: str
    source: str
    direction: Direction | None = None
    outcome: Outcome | None = None
    missed_reason: MissedReason | None = None
    final: bool = False
    phone: str | None = None  # E.164 when it could be understood, else as sent
    phone_raw: str | None = None
    our_number: str | None = None  # the account's number the call came through (diversion)
    user: str | None = None  # PBX user who took or made the call
    extension: str | None = None
    department: str | None = None
    duration: int = 0
    # Seconds the call rang before it was answered or given up, when the PBX reports it (telediscount's
    # `waiting_time`); None when it does not: a CRM is then told nothing rather than 0.
    waiting_time: int | None = None
    started_at: datetime | None = None
    start_source: StartSource | None = None
    recording_url: str | None = None
    rating: str | None = None
    pbx_status: str | None = None
    users_rang: set[str] = Field(default_factory=set)
    ring_order: list[str] = Field(default_factory=list)  # users_rang in the order their phones rang
    accepted_by: str | None = None
    # The call id of ours a click-to-call's card was opened under, when the PBX named no call and
    # this call is the one it placed (callbridge.core.clicks).
    card_call_id: str | None = None
    flags: set[str] = Field(default_factory=set)
    notes: list[Note] = Field(default_factory=list)

    @field_validator("notes", mode="before")
    @classmethod
    def _notes(cls, value: Any) -> Any:
        # Calls stored before notes kept their author and time have them as one text.
        if isinstance(value, str):
            return [{"text": value}] if value.strip() else []
        return value or []

    def rang_in_order(self) -> list[str]:
        """The users whose phones rang, first rung first; users a source reported without an order
        (or rung before the order was kept) follow, alphabetically."""
        ordered = list(dict.fromkeys(u for u in self.ring_order if u))
        return ordered + sorted(self.users_rang - set(ordered))

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Call:
        return cls.model_validate(item)
