"""Live events: a PBX reports that a call rings, was answered or ended. Each PBX's adapter maps its
webhook to one `LiveEvent` once; core/record.py `record_live` is the one writer of what it says:
the call's live state (who rings, who answered) and the call cards of every CRM of the account that
shows them (docs/delivery.md).

A card is only queued here, one message per such CRM on the live card queue (a few ms), apart from
the calls: the card worker (callbridge.features.delivery.cards) hands it to that CRM's connector,
which maps the canonical event to its own protocol. A card is useful for seconds: a failed send is
logged and dropped, never retried, and a card that is stale when its turn comes is not sent; the
call itself is delivered by the delivery path whatever happens here, never behind a card.

Which CRMs show cards is declared by their settings model (`live_cards`, a ClassVar or a property
switched by an account-file field), so publishing imports no connector.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from callbridge.core.phones import normalize
from callbridge.core.terms import Marker
from callbridge.infra import aws, clock
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings

if TYPE_CHECKING:
    from callbridge.core.accounts import Account
    from callbridge.core.config import CrmSettings

LIVE_CARDS = "live_cards"  # the capability's name on a CRM's settings model
KIND = "call_event"  # the queue message's `kind` (the worker's dispatch)

Stage = Literal["ringing", "answered", "ended"]  # what a call card shows
LiveDirection = Literal["in", "out"]


class Live(StrEnum):
    """What a live event changes in the call's live state, in canonical terms."""

    ARRIVED = "arrived"  # an incoming call reached the PBX, which names no ringing phone
    RINGING = "ringing"  # an incoming call rings `user`
    DIALING = "dialing"  # `user` places an outgoing call
    PLACED = "placed"  # the PBX accepted our click-to-call for `user` under this call id
    ANSWERED = "answered"  # `user` took the call
    STOPPED_RINGING = "stopped_ringing"  # `user`'s phone stopped ringing, the call goes on elsewhere
    ENDED = "ended"  # the call ended for `user`
    TRANSFERRED = "transferred"  # the call was passed to `user`
    OTHER = "other"  # kept on the timeline, changes nothing else


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One moment of a call, whatever PBX reported it.

    Its card (the first eight fields, all a queued card message carries): `stage` is what the CRMs'
    cards show, None for a moment they show nothing for. Its record (the rest, set by the adapter
    that parsed the webhook): what it changes in the call's live state (`change`), applied once under
    its `marker`; an event without a marker only opens or closes a card."""

    stage: Stage | None
    call_id: str
    phone: str  # the client's number, E.164 when it is a number
    users: tuple[str, ...]  # the PBX users concerned (whose phone rings, who answered)
    direction: LiveDirection | None = None  # None when the PBX does not say (an ended leg)
    our_number: str | None = None  # E.164 of our number the call came through
    answered: bool = False
    # When it happened (UTC ISO): the PBX's time, else the receipt of its webhook. A card is sent
    # after a queue that may lag; Bitrix24 files the call's start from the card's register.
    at: str | None = None
    change: Live = Live.OTHER
    source: str = ""
    marker: Marker | None = None  # the source record's identity: applied once
    phone_raw: str = ""  # the number as the PBX sent it
    extension: str | None = None
    department: str | None = None
    flags: frozenset[str] = frozenset()
    extra: Mapping[str, Any] = field(default_factory=dict)  # source-specific attributes, kept as first sent
    raw: Mapping[str, Any] = field(default_factory=dict)  # the source record, secrets removed
    # The source's reconciliation asks about the call by id until then (store/open_calls.py).
    follow_until: datetime | None = None

    @property
    def user(self) -> str:
        """The one PBX user whose leg the event is about (the PBX names one at most)."""
        return self.users[0] if self.users else ""

    def moment(self) -> datetime | None:
        """`at` as a time; None for a message queued before events carried their time."""
        try:
            return clock.parse_iso(self.at) if self.at else None
        except ValueError:
            return None

    def as_dict(self) -> dict[str, Any]:
        """The card, as a queued message carries it."""
        return {
            "stage": self.stage,
            "call_id": self.call_id,
            "phone": self.phone,
            "users": list(self.users),
            "direction": self.direction,
            "our_number": self.our_number,
            "answered": self.answered,
            "at": self.at,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LiveEvent:
        direction = data.get("direction")
        return cls(
            stage=data["stage"],
            call_id=str(data["call_id"]),
            phone=str(data["phone"]),
            users=tuple(str(u) for u in data.get("users") or ()),
            direction=direction if direction in ("in", "out") else None,
            our_number=str(data["our_number"]) if data.get("our_number") else None,
            answered=bool(data.get("answered")),
            at=str(data["at"]) if data.get("at") else None,
        )


def event(account: Account, stage: Stage, call_id: str, phone: str, users: tuple[str, ...], *,
          direction: LiveDirection | None = None, our_number: str | None = None,
          answered: bool = False, at: datetime | None = None) -> LiveEvent:  # fmt: skip
    """A LiveEvent with the numbers as the PBX sent them normalized in the account's region, at
    `at` (the PBX's time of the event) or now (its receipt: the webhooks publish as they arrive)."""
    ours = normalize(our_number, account.phone_region).key if our_number else None
    return LiveEvent(stage, call_id, normalize(phone, account.phone_region).key, users, direction, ours or None,
                     answered, clock.iso(at or clock.now()))  # fmt: skip


def still_ringing(account_id: str, live: LiveEvent) -> bool:
    """Whether a ringing card still shows the call's real state when it is sent (the card queue may
    lag behind the PBX): not once the call is final or ended, answered by another user, or - for a
    source that tracks each user's leg (`users_rang` / `ringing`, core/record.py) - once this
    user's phone stopped ringing. A call we hold no state of (a click-to-call's placeholder) rings."""
    from callbridge.store import calls

    call = calls.get_call(account_id, live.call_id)
    if call is None:
        return True
    if call.get("final") or call.get("completed_at"):
        return False
    accepted = call.get("accepted_by")
    if accepted and accepted not in live.users:
        return False
    tracked = set(call.get("users_rang") or ())
    ringing = set(call.get("ringing") or ())
    legs = [u for u in live.users if u in tracked]
    return not legs or any(u in ringing for u in legs)


def has_live_cards(settings: CrmSettings) -> bool:
    return getattr(settings, LIVE_CARDS, False) is True


def card_crms(account: Account) -> list[CrmSettings]:
    """The account's CRMs that show live cards (parses the typed settings only when it has CRMs)."""
    if not account.has_crms:
        return []
    return [crm for crm in account.settings.crms if has_live_cards(crm)]


def wanted(account: Account) -> bool:
    """Whether any CRM of the account shows cards: a PBX may skip the lookups a card needs."""
    return bool(card_crms(account))


def publish(account: Account, live: LiveEvent) -> None:
    """Queue the event for every CRM of the account that shows cards. Never raises: the PBX's
    answer must not depend on a call card."""
    try:
        crms = card_crms(account)
        settings = get_settings()
        queue_url = settings.live_card_queue_url or settings.delivery_queue_url
        if not crms or not queue_url:
            return
        entries: list[Any] = [
            {"Id": str(i), "MessageBody": json.dumps(message(account.id, crm.name, live))} for i, crm in enumerate(crms)
        ]
        aws.sqs().send_message_batch(QueueUrl=queue_url, Entries=entries)
    except Exception:
        logger().exception("could not queue a live call card")


def message(account_id: str, crm_name: str, live: LiveEvent) -> dict[str, Any]:
    """The queue message of one card for one CRM. Messages queued before live events were canonical
    carry the CRM's own `event` instead of `live`: the CRM's connector takes both."""
    return {"kind": KIND, "account": account_id, "crm": crm_name, "live": live.as_dict()}
