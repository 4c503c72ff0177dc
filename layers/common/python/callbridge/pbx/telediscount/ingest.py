"""Storing telediscount calls (docs/telediscount.md): the `incoming` webhook updates the live call,
the `finished` webhook and the reconciliation (`get_calls`) store the final call through
record.store_final, with the same marker, so each call is stored once whoever reports it first.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from callbridge.core.accounts import Account
from callbridge.core.record import store_final
from callbridge.infra import clock
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings
from callbridge.pbx.telediscount.client import TelediscountApi
from callbridge.pbx.telediscount.protocol import DIALLED, INCOMING, SOURCE, final_call, parse_incoming
from callbridge.pbx.telediscount.settings import TelediscountSettings
from callbridge.store import calls, open_calls
from callbridge.store.updates import Update


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
    """The start of an incoming call: the live state of the call. False for a repeated webhook."""
    now = received or clock.now()
    incoming = parse_incoming(fields, account.phone_region, now)
    now_iso = clock.iso(now)
    update = Update().set(account=account.id, call_id=incoming.call_id, source=SOURCE, last_event_at=now_iso)
    update.set_if_absent(
        created_at=now_iso,
        direction="in",
        phone=incoming.phone,
        phone_raw=incoming.phone_raw,
        our_number=incoming.our_number,
        first_event_at=incoming.started_at,
    )
    if incoming.flags:
        update.add_to_set("flags", *sorted(incoming.flags))
    if incoming.setup_time_raw and incoming.start_source != "pbx":
        update.set_if_absent(setup_time_raw=incoming.setup_time_raw)
    applied = calls.apply_once(account.id, incoming.call_id, INCOMING, now_iso, incoming.raw, update)
    if applied:
        remember_open(account, incoming.call_id, now)
    logger().info("telediscount incoming stored" if applied else "telediscount incoming repeated, ignored")
    return applied


def remember_open(account: Account, call_id: str, since: datetime) -> None:
    """A call telediscount told us about before it ended: the reconciliation asks about it by id
    (store/open_calls.py) until it is final, for as long as its window lasts."""
    expires = since + timedelta(seconds=get_settings().telediscount_reconcile_window_s + 86400)
    open_calls.mark_open(account.id, SOURCE, call_id, clock.iso(since), int(expires.timestamp()))


def record_dialled(account: Account, call_id: str, pbx_user: str, e164: str, received: datetime | None = None) -> bool:
    """A click-to-call `outcome` telediscount accepted with a call id: the outgoing call begins. No
    webhook tells of its start, so it is kept here: its start time for a `finished` without a usable
    setup_time, `dialled_at` for its call card's end (callbridge.pbx.telediscount.cards), and the id
    for the reconciliation. False when it was kept before."""
    now = received or clock.now()
    now_iso = clock.iso(now)
    update = Update().set(account=account.id, call_id=call_id, source=SOURCE, last_event_at=now_iso)
    update.set_if_absent(
        created_at=now_iso, direction="out", phone=e164, phone_raw=e164, user=pbx_user, first_event_at=now_iso,
        dialled_at=now_iso,
    )  # fmt: skip
    raw = {"api_call_id": call_id, "num_b": e164, "pbx_user": pbx_user}
    applied = calls.apply_once(account.id, call_id, DIALLED, now_iso, raw, update)
    if applied:
        remember_open(account, call_id, now)
    return applied


def record_finished(
    account: Account, fields: Mapping[str, Any], received: datetime | None = None, *, deliver: bool = True
) -> bool:
    """A finished call (webhook or get_calls record). False when it was already stored or is an
    internal call."""
    now = received or clock.now()
    call_id = str(fields.get("api_call_id") or "").strip()
    existing = calls.get_call(account.id, call_id) if call_id else None
    call = final_call(
        fields,
        region=account.phone_region,
        users=users_of(account),
        received=now,
        first_event_at=str(existing["first_event_at"]) if existing and existing.get("first_event_at") else None,
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
