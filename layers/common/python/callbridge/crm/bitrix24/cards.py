"""Bitrix24 live call cards (docs/bitrix24.md, "Call cards"): Bitrix24 shows a card only for a call
it knows, so the first ringing event registers the call (the parameters stored first, as the
delivery does: callbridge.crm.bitrix24.connector) and shows the card to the ringing managers with
`telephony.externalcall.show` - both in one `batch` request; a later ringing leg only shows it to
its manager. An ended leg (the manager hung up, or the PBX stopped ringing him because another one
answered: Bitrix24's "simultaneous queue") hides his card with `telephony.externalcall.hide`; an
`answered` (from a PBX that ends no other leg) hides every card shown but the answering manager's.
The delivery of the final call then finishes the same CALL_ID.

A card is useful for seconds: a failed send is logged and dropped (callbridge.core.live).
"""

from __future__ import annotations

import time
from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.config import CrmSettings
from callbridge.core.live import LiveEvent, still_ringing
from callbridge.core.phones import is_number
from callbridge.crm.bitrix24.api import Bitrix24Api, Bitrix24Error, MethodError, open_api
from callbridge.crm.bitrix24.callbacks import take_click
from callbridge.crm.bitrix24.calls import CALL_ID, FINISHED, REGISTER, SHOWN, bitrix_time, register_params
from callbridge.crm.bitrix24.settings import Bitrix24Settings
from callbridge.crm.bitrix24.users import user_id
from callbridge.infra import clock
from callbridge.infra.http import HttpError, RetryPolicy
from callbridge.infra.observability import logger
from callbridge.store import crm_calls
from callbridge.store.updates import Update


def _user_ids(account: Account, live: LiveEvent) -> list[int]:
    mappings = [m for pbx_user in live.users for m in account.settings.users if m.pbx_user == pbx_user]
    return [found for m in mappings if (found := user_id(m)) is not None]


def send_live(account: Account, settings: CrmSettings, message: dict[str, Any]) -> bool:
    assert isinstance(settings, Bitrix24Settings)
    live = LiveEvent.from_dict(message.get("live") or {})
    ids = _user_ids(account, live)
    if not ids and live.stage != "answered":
        return True  # nobody's card (an answer by an unmapped user still hides the others')
    api = open_api(account.id, settings, timeout_s=5.0,
                   retry=RetryPolicy(attempts=2, backoff_initial_s=0.2, backoff_max_s=0.5, jitter_s=0.1))  # fmt: skip
    try:
        if live.stage == "ringing":
            return _ringing(account, settings, api, live, ids)
        state = crm_calls.get(account.id, live.call_id, settings.name) or {}
        if not state.get(CALL_ID) or state.get(FINISHED):  # a finished call's cards are gone already
            return True
        if settings.mode == "realtime" and _final(account, live):
            # Its finish is on its way (cards and calls go separate ways, at the same time) and hides
            # every card: a hide crossing it would reach a finished call, which Bitrix24 refuses.
            return True
        # Answered: the others' cards go (the answering manager keeps his); ended: his card goes.
        shown = {int(u) for u in state.get(SHOWN) or ()}
        hidden = sorted(shown - set(ids)) if live.stage == "answered" else ids
        if hidden:
            try:
                api.call("telephony.externalcall.hide", {"CALL_ID": state[CALL_ID], "USER_ID": hidden})
            except Bitrix24Error as exc:
                if exc.code != CALL_NOT_FOUND:
                    raise
                # Its finish crossed this hide after the check above (the lanes go at the same
                # time): the finish hid every card, and the portal refuses the hide.
                return True
            _forget(account, settings, live, hidden)
        return True
    except HttpError as exc:
        logger().warning("Bitrix24 call card not delivered", extra={"error": str(exc), "stage": live.stage})
        return False
    finally:
        api.close()


# What the portal answers a method on a call it finished (or never registered).
CALL_NOT_FOUND = "ERROR_NOT_FOUND"


def _final(account: Account, live: LiveEvent) -> bool:
    from callbridge.store import calls

    call = calls.get_call(account.id, live.call_id)
    return bool(call and call.get("final"))


def _remember(account: Account, settings: Bitrix24Settings, live: LiveEvent, ids: list[int]) -> None:
    """Whose card is up: an `answered` hides the others' (PBXs that report no per-leg end)."""
    crm_calls.update(account.id, live.call_id, settings.name, Update().add_to_set(SHOWN, *map(str, ids)))


def _forget(account: Account, settings: Bitrix24Settings, live: LiveEvent, ids: list[int]) -> None:
    crm_calls.update(account.id, live.call_id, settings.name, Update().remove_from_set(SHOWN, *map(str, ids)))


def _ringing(account: Account, settings: Bitrix24Settings, api: Bitrix24Api, live: LiveEvent, ids: list[int]) -> bool:
    if not is_number(live.phone):
        return True  # Bitrix24 registers calls by number: no card for a withheld caller id
    if not still_ringing(account.id, live):
        return True  # answered or ended while the card waited in the queue: never shown late
    direction = live.direction or "in"
    # The call's own start, not when the queue got to its card (it lags under Bitrix24's limit).
    started = live.moment() or clock.now()
    params = register_params(
        settings, {"USER_ID": ids[0]}, live.phone, direction, bitrix_time(started), live.our_number, live.call_id
    )
    attributes: dict[str, Any] = {REGISTER: params, "via": "card"}
    if direction == "out" and crm_calls.get(account.id, live.call_id, settings.name) is None:
        # The call a click in Bitrix24 asked for: Bitrix24 registered it, our card shows that one.
        for pbx_user in live.users:
            clicked = take_click(account.id, settings.name, live.call_id, pbx_user, live.phone, time.time())
            if clicked:
                attributes.update({CALL_ID: clicked, "via": "click"})
                break
    state = crm_calls.claim(account.id, live.call_id, settings.name, attributes, int(time.time()))
    if state.get(FINISHED):
        return True  # the call was filed before its card came: nothing rings any more
    if state.get(CALL_ID):
        api.call("telephony.externalcall.show", {"CALL_ID": state[CALL_ID], "USER_ID": ids})
        _remember(account, settings, live, ids)
        _recheck(account, settings, api, live, ids, str(state[CALL_ID]))
        return True
    answers = api.batch([
        ("reg", "telephony.externalcall.register", state[REGISTER]),
        ("show", "telephony.externalcall.show", {"CALL_ID": "$result[reg][CALL_ID]", "USER_ID": ids}),
    ])  # fmt: skip
    registered = answers.get("reg")
    if isinstance(registered, MethodError) or not isinstance(registered, dict) or not registered.get("CALL_ID"):
        logger().warning("Bitrix24 did not register a ringing call", extra={"error": str(registered)})
        return False
    crm_calls.update(
        account.id, live.call_id, settings.name, Update().set_if_absent(**{CALL_ID: str(registered["CALL_ID"])})
    )
    if isinstance(answers.get("show"), MethodError):
        return False
    _remember(account, settings, live, ids)
    _recheck(account, settings, api, live, ids, str(registered["CALL_ID"]))
    return True


def _recheck(
    account: Account, settings: Bitrix24Settings, api: Bitrix24Api, live: LiveEvent, ids: list[int], call_id: str
) -> None:
    """The leg may have ended while its card was being shown: its hide found no CALL_ID yet and
    was dropped. Asked again once the card is up, so that it never outlives the ringing."""
    if not still_ringing(account.id, live):
        api.call("telephony.externalcall.hide", {"CALL_ID": call_id, "USER_ID": ids})
        _forget(account, settings, live, ids)
