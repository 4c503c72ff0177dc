"""A click-to-call the PBX accepted without naming its call (a Cloud PBX `makeCall` may answer an
empty body, docs/protocols/cloudpbx.md): the manager's card is opened under a call id of ours (the
placeholder, `c2c-…`), and the click waits for the PBX's own call (store/clicks.py). The PBX's next
outgoing call of that manager to that number within the window is the clicked call, for every CRM:
it carries the placeholder (`card_call_id` on the call item) so that a CRM that filed the click
under an id of its own (Bitrix24's CALL_ID) finishes that one, and the placeholder's card is closed
when the call is final (docs/clicktocall.md, "A PBX that names no call").

A PBX that named its call but reports no end of an outgoing call except its final record (the Cloud
PBX's `history`) has its click wait here too, `named`: only the call of that id takes it, and its
final record closes the card opened under it."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from callbridge.core import live
from callbridge.infra import clock
from callbridge.infra.observability import logger
from callbridge.store import clicks

if TYPE_CHECKING:
    from callbridge.core.accounts import Account

# The PBX rings the manager first, then dials: its call starts shortly after the click (a clock a
# little apart may put it just before).
BEFORE_S, AFTER_S = 60, 600
CARD_CALL_ID = "card_call_id"  # the call item's attribute: the placeholder its card was opened under


def expect(account_id: str, pbx_user: str, e164: str, placeholder: str, *, named: bool = False) -> None:
    """`named`: `placeholder` is the PBX's own id of the call it placed, not one of ours."""
    now = int(clock.now().timestamp())
    clicks.expect(account_id, pbx_user, e164, placeholder, now, now + AFTER_S + 3600, named=named)


def follow(account: Account, call_id: str, pbx_user: str, e164: str, started_at: str, answered: bool) -> None:
    """A final outgoing call that answers a waiting click keeps the click's placeholder before it is
    handed on (`card_call_id` on the call item, set with the take), and the card opened under the
    placeholder is closed. Never raises: the call is stored whatever happens here."""
    placeholder = link(account.id, call_id, pbx_user, e164, clock.parse_iso(started_at), card_attribute=CARD_CALL_ID)
    if placeholder is None:
        return
    ended = live.LiveEvent("ended", placeholder, e164, (pbx_user,), answered=answered, at=clock.iso(clock.now()))
    live.publish(account, ended)  # never raises


def link(
    account_id: str, call_id: str, pbx_user: str, e164: str, started: datetime, *, card_attribute: str | None = None
) -> str | None:
    """The placeholder of the click `call_id` answers (taken once), or None. Never raises: a click
    that cannot be matched leaves the call as it is. `card_attribute`: the call item keeps the
    placeholder under that name, written with the take."""
    try:
        waiting = clicks.waiting(account_id, pbx_user, e164)
        if not waiting or not waiting.get("placeholder"):
            return None
        clicked = float(waiting.get("clicked_at") or 0)
        if not clicked - BEFORE_S <= started.timestamp() <= clicked + AFTER_S:
            return None
        placeholder = str(waiting["placeholder"])
        if waiting.get("named") and placeholder != call_id:
            return None  # the PBX named the clicked call: another call of the manager to the number is not it
        taken = clicks.take(account_id, pbx_user, e164, placeholder, call_id, card_attribute=card_attribute)
        return placeholder if taken else None
    except Exception:
        logger().exception("could not match a click-to-call to its PBX call")
        return None
