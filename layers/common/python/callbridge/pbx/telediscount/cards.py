"""Live call cards for telediscount calls (callbridge.core.live).

The `incoming` webhook names no ringing user, but telediscount forwards a known contact's call to the
SIP account of the contact's responsible user (docs/telediscount.md, "Mapping CRM users ↔ SIP
accounts"): that user's card is opened, and `finished` closes it. A caller we don't know rings the
"new contacts" users, whom the webhook doesn't name: no card. An outgoing call's card is opened by
click-to-call, which names the manager; `finished` closes it. Never raises: the PBX's answer must not
depend on a call card.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from callbridge.core import live
from callbridge.core.accounts import Account
from callbridge.core.phones import normalize
from callbridge.infra.observability import logger
from callbridge.store import calls, contacts


def _responsible(account: Account, phone: str) -> tuple[str, str] | None:
    """The caller's E.164 number and its contact's responsible user, when both are known (and
    there is a CRM to show a card in: otherwise no lookup at all)."""
    if not live.wanted(account):
        return None
    e164 = normalize(phone, account.phone_region).e164
    if e164 is None:
        return None  # a SIP account (an outgoing call's num_a), a hidden number
    contact = contacts.find_by_phone(account.id, e164)
    responsible = str(contact.get("responsible") or "") if contact else ""
    return (e164, responsible) if responsible else None


def incoming(account: Account, fields: Mapping[str, Any]) -> None:
    try:
        found = _responsible(account, str(fields.get("num_a") or ""))
        if found:
            phone, user = found
            call_id = str(fields.get("api_call_id") or "")
            ours = str(fields.get("num_m") or "") or None
            live.publish(
                account, live.event(account, "ringing", call_id, phone, (user,), direction="in", our_number=ours)
            )
    except Exception:
        logger().exception("could not open a retailCRM call card for a telediscount call")


def finished(account: Account, fields: Mapping[str, Any]) -> None:
    try:
        call_id = str(fields.get("api_call_id") or "")
        call = calls.get_call(account.id, call_id) if call_id else None
        if call and call.get("direction") == "out":
            _finished_out(account, call, fields)
            return
        if not call or call.get("direction") != "in":
            return
        found = _responsible(account, str(fields.get("num_a") or ""))
        if found:
            phone, user = found
            answered = str(fields.get("connection_time") or "0").strip() not in ("", "0")
            ours = str(fields.get("num_m") or "") or None
            live.publish(
                account, live.event(account, "ended", call_id, phone, (user,), our_number=ours, answered=answered)
            )
    except Exception:
        logger().exception("could not close a retailCRM call card for a telediscount call")


def _finished_out(account: Account, call: Mapping[str, Any], fields: Mapping[str, Any]) -> None:
    """An outgoing call ends. Its card (`out`) was opened by click-to-call (callbridge.features.
    clicktocall) for the manager who clicked, when telediscount accepted it with this call id
    (`dialled_at`, ingest.record_dialled); a call dialled on a phone had no card to close."""
    user = str(call.get("user") or "")
    if not call.get("dialled_at") or not user or not live.wanted(account):
        return
    answered = str(fields.get("connection_time") or "0").strip() not in ("", "0")
    phone, ours = str(call.get("phone") or ""), str(fields.get("num_m") or "") or None
    live.publish(
        account,
        live.event(account, "ended", str(call["call_id"]), phone, (user,), our_number=ours, answered=answered),
    )
