"""The words every PBX and CRM shares about a call: its direction, outcome, why it was missed, where its
start time came from, its flags, and the identity of one source record. Kept apart from the call
model (core/model.py, pydantic): the webhooks that record a call use these on every request and
never need the model's validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

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
