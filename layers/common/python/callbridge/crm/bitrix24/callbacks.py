"""Bitrix24's request to us (docs/bitrix24.md, "Click-to-call"): the `OnExternalCallStart` event,
posted as a form to the handler our application bound (`event.bind`) when a manager clicks a number:
`event`, `data[USER_ID]`, `data[PHONE_NUMBER]`, `data[CALL_ID]` (the call Bitrix24 registered
already), `auth[application_token]` (the application's token: the event's authentication).

Once the PBX accepted, the CALL_ID is kept for the call the PBX makes (callbridge.store.crm_calls):
its delivery finishes that call instead of registering another one."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings, UserMapping
from callbridge.crm.base import Callback, query_phone
from callbridge.crm.bitrix24.calls import CALL_ID
from callbridge.crm.bitrix24.users import find_user
from callbridge.store import crm_calls
from callbridge.store.updates import Update

EVENT = "ONEXTERNALCALLSTART"
CLICK_WINDOW_S = 600  # a click is matched to an outgoing call of its manager and number that starts within


def read_callback(query: Mapping[str, str]) -> Callback:
    event = (query.get("event") or "").strip().upper()
    return Callback(
        secret=query.get("auth[application_token]") or "",
        phone=query_phone(query.get("data[PHONE_NUMBER]")) if event == EVENT else "",
        manager={"bitrix24_user_id": (query.get("data[USER_ID]") or "").strip() or None},
        reference=(query.get("data[CALL_ID]") or "").strip() or None,
    )


def callback_user(users: Sequence[UserMapping], callback: Callback) -> UserMapping | None:
    return find_user(users, callback.manager.get("bitrix24_user_id"))


def click_key(pbx_user: str, e164: str) -> str:
    """Where a click waits for its call when the PBX gave no call id (store/crm_calls' call id)."""
    return f"click#{pbx_user}#{e164}"


def call_placed(account: Account, settings: CrmSettings, callback: Callback, pbx_user: str, e164: str,
                pbx_call_id: str | None) -> None:  # fmt: skip
    if not callback.reference:
        return
    now = int(time.time())
    click = {CALL_ID: callback.reference, "via": "click", "clicked_at": now}
    # The latest click of a manager on a number waits for his next outgoing call to it.
    crm_calls.put(account.id, click_key(pbx_user, e164), settings.name, click, now)
    if pbx_call_id:  # the PBX named its call: that call is the click's, whenever it comes
        crm_calls.claim(account.id, pbx_call_id, settings.name, click, now)


def take_click(account_id: str, crm: str, call_id: str, pbx_user: str, e164: str, started_epoch: float) -> str | None:
    """The CALL_ID of the click an outgoing call answers, taken once (the first call to claim it
    has it); None when no click of this manager on this number came shortly before."""
    key = click_key(pbx_user, e164)
    click = crm_calls.get(account_id, key, crm)
    if not click or not click.get(CALL_ID):
        return None
    clicked = float(click.get("clicked_at") or 0)
    if not clicked - 60 <= started_epoch <= clicked + CLICK_WINDOW_S:
        return None
    # Taken once: a second call of the same manager to the same number is a call of its own.
    update = Update().set(taken_by=call_id).bind({"#taken": "taken_by"}, mine=call_id)
    taken = crm_calls.update(account_id, key, crm, update, "attribute_not_exists(#taken) OR #taken = :mine")
    return str(click[CALL_ID]) if taken else None
