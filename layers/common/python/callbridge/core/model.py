"""The canonical call, whatever PBX it came from. Adapters in map to it; adapters out map from it.
Its vocabulary (direction, outcome, flags, the source record's marker) is core/terms.py's, which loads
no pydantic: the webhooks that record a call need the words, not this model."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from callbridge.core.terms import Direction, MissedReason, Outcome, StartSource


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
