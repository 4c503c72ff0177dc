"""telediscount calls as canonical records (docs/telediscount.md), written by core/record.py: the
`incoming` webhook is a live event (the call arrives), our accepted click-to-call one too (the call
is placed), the `finished` webhook and the reconciliation (`get_calls`) a final call with the same
marker, so each call is stored once whoever reports it first.

Call cards (core/live.py): the `incoming` webhook names no ringing user, but telediscount forwards a
known contact's call to the SIP account of the contact's responsible user (docs/telediscount.md,
"Mapping CRM users ↔ SIP accounts"): that user's card is opened, and `finished` closes it. A caller
we don't know rings the "new contacts" users, whom the webhook doesn't name: no card. An outgoing
call's card is opened by click-to-call, which names the manager; `finished` closes it. The card
never decides the PBX's answer: a failed look-up only leaves the card out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from callbridge.core import live
from callbridge.core.accounts import Account
from callbridge.core.live import Live, LiveEvent
from callbridge.core.phones import normalize
from callbridge.core.record import record_live, store_final
from callbridge.infra import clock
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.pbx.telediscount.client import TelediscountApi
from callbridge.pbx.telediscount.protocol import DIALLED, INCOMING, SOURCE, final_call, parse_incoming
from callbridge.pbx.telediscount.settings import TelediscountSettings
from callbridge.store import calls, contacts


def api_url(account: Account) -> str:
    """The account's telediscount API base (its default is the settings model's)."""
    settings = account.settings.pbx
    if not isinstance(settings, TelediscountSettings):
        raise TypeError(f"account {account.id} has no telediscount PBX")
    return settings.api_url


def record_url(account: Account, call_id: str) -> str:
    """The get_record link of a call, without the key (the recordings worker adds it)."""
    return TelediscountApi(api_url=api_url(account), api_key="").record_url(call_id)


def users_of(account: Account) -> list[dict[str, Any]]:
    """The user mapping as the protocol functions read it (callbridge.pbx.telediscount.protocol
    user_for_sip): each PBX user and its SIP account."""
    # Imported here: the webhook module itself loads no settings model (callbridge.registry).
    from callbridge.pbx.telediscount.settings import TelediscountUser

    return [{"pbx_user": u.pbx_user, "sip_account": TelediscountUser.of(u).sip_account} for u in account.settings.users]


def record_incoming(account: Account, fields: Mapping[str, Any], received: datetime | None = None) -> bool:
    """The start of an incoming call: its live state, and its card. False for a repeated webhook."""
    now = received or clock.now()
    incoming = parse_incoming(fields, account.phone_region, now)
    card = _responsible(account, str(fields.get("num_a") or ""))
    event = LiveEvent(
        stage="ringing" if card else None,
        call_id=incoming.call_id,
        phone=incoming.phone,
        users=(card[1],) if card else (),
        direction="in",
        our_number=incoming.our_number,
        at=incoming.started_at,
        change=Live.ARRIVED,
        source=SOURCE,
        marker=INCOMING,
        phone_raw=incoming.phone_raw,
        flags=incoming.flags,
        extra={"setup_time_raw": incoming.setup_time_raw}
        if incoming.setup_time_raw and incoming.start_source != "pbx"
        else {},
        raw=incoming.raw,
        follow_until=_followed_until(now),
    )
    applied = record_live(account, event, now)
    logger().info("telediscount incoming stored" if applied else "telediscount incoming repeated, ignored")
    return applied


def _followed_until(since: datetime) -> datetime:
    """A call telediscount told us about before it ended: the reconciliation asks about it by id
    (store/open_calls.py) until it is final, for as long as its window lasts."""
    return since + timedelta(seconds=get_settings().telediscount_reconcile_window_s + 86400)


def record_dialled(account: Account, call_id: str, pbx_user: str, e164: str, received: datetime | None = None) -> bool:
    """A click-to-call `outcome` telediscount accepted with a call id: the outgoing call begins. No
    webhook tells of its start, so it is kept here: its start time for a `finished` without a usable
    setup_time, `dialled_at` for its call card's end (`record_finished`), and the id for the
    reconciliation. False when it was kept before. Its card was opened by click-to-call."""
    now = received or clock.now()
    event = LiveEvent(
        stage=None,
        call_id=call_id,
        phone=e164,
        users=(pbx_user,),
        direction="out",
        change=Live.PLACED,
        source=SOURCE,
        marker=DIALLED,
        phone_raw=e164,
        raw={"api_call_id": call_id, "num_b": e164, "pbx_user": pbx_user},
        follow_until=_followed_until(now),
    )
    return record_live(account, event, now)


def record_finished(
    account: Account, fields: Mapping[str, Any], received: datetime | None = None, *, deliver: bool = True
) -> bool:
    """A finished call (webhook or get_calls record). False when it was already stored or is an
    internal call. A `finished` webhook stored now closes the call's card (`close_card`)."""
    now = received or clock.now()
    call_id = str(fields.get("api_call_id") or "").strip()
    call = final_call(
        fields,
        region=account.phone_region,
        users=users_of(account),
        received=now,
        record_url=record_url(account, call_id) if call_id else None,
    )
    if call is None:
        return False
    applied = store_final(account, call, deliver=deliver)
    logger().info(
        "telediscount call stored" if applied else "telediscount call already stored, ignored",
        extra={"outcome": call.outcome.value, "start_source": call.start_source.value, "flags": sorted(call.flags)},
    )
    return applied


def close_card(account: Account, fields: Mapping[str, Any]) -> None:
    """The card of a call whose `finished` webhook was just stored: its end, for the responsible
    user of an incoming call's contact, or for the manager whose click-to-call telediscount accepted
    with this call id (`dialled_at`, record_dialled); a call dialled on a phone had no card."""
    try:
        ended = _ended(account, fields)
        if ended is not None:
            record_live(account, ended)
    except Exception:
        logger().exception("could not close a call card for a telediscount call")


def _ended(account: Account, fields: Mapping[str, Any]) -> LiveEvent | None:
    call_id = str(fields.get("api_call_id") or "")
    call = calls.get_call(account.id, call_id) if call_id else None
    if not call or call.get("direction") not in ("in", "out"):
        return None
    answered = str(fields.get("connection_time") or "0").strip() not in ("", "0")
    num_m = str(fields.get("num_m") or "")
    ours = normalize(num_m, account.phone_region).key if num_m else None
    if call.get("direction") == "out":
        user = str(call.get("user") or "")
        if not call.get("dialled_at") or not user or not live.wanted(account):
            return None
        phone = str(call.get("phone") or "")
    else:
        found = _responsible(account, str(fields.get("num_a") or ""))
        if not found:
            return None
        phone, user = found
    phone = normalize(phone, account.phone_region).key
    return LiveEvent(
        "ended", call_id, phone, (user,), our_number=ours or None, answered=answered, at=clock.iso(clock.now())
    )


def _responsible(account: Account, phone: str) -> tuple[str, str] | None:
    """The caller's E.164 number and its contact's responsible user, when both are known (and
    there is a CRM to show a card in: otherwise no lookup at all). None, too, when the look-up
    fails: the card is left out, the call is stored whatever happens here."""
    try:
        if not live.wanted(account):
            return None
        e164 = normalize(phone, account.phone_region).e164
        if e164 is None:
            return None  # a SIP account (an outgoing call's num_a), a hidden number
        contact = contacts.find_by_phone(account.id, e164)
        responsible = str(contact.get("responsible") or "") if contact else ""
        return (e164, responsible) if responsible else None
    except Exception:
        logger().exception("could not look up the contact of a telediscount call for its card")
        return None
