"""Bitrix24 at its edges, against the strict fake portal (tests/fakes/bitrix24.py) on 127.0.0.1 and
the Calls table on moto: a card registers the call with the call's own start however late the card
queue gets to it, two PBX calls from one number to one manager are two Bitrix24 calls (the portal's
30-minute repeat rule compares number, type, user, line and EXTERNAL_CALL_ID, not the start), and a
portal without the statistics module does not hold deliveries back."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from callbridge.core import accounts
from callbridge.core.accounts import Account
from callbridge.core.config import AccountConfig, CrmSettings
from callbridge.crm.base import with_secrets
from callbridge.features.admin import apply_account
from callbridge.infra import clock
from tests.contract.conftest import T0, account_id, now, stack_env  # noqa: F401  (fixtures, by import)
from tests.integration.test_bitrix24 import CODE, Portal, day, kinds, portal  # noqa: F401  (a fixture, by import)
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(60)


def card_account(portal: Portal) -> tuple[Account, CrmSettings]:  # noqa: F811
    """The portal's account with live cards, as the delivery worker hands its CRM over."""
    apply_account(AccountConfig.model_validate(trusting_fakes({
        "account": portal.account, "phone_region": "RU",
        "pbx": {"kind": "cloudpbx", "crm_tokens": ["b24-edges-token-0001"]},
        "crms": [{"kind": "bitrix24", "webhook_url": f"{portal.url}/rest/1/{CODE}/"}],
        "users": [{"pbx_user": "andy", "bitrix24_user_id": 7}, {"pbx_user": "boris", "bitrix24_user_id": 9}],
    })))  # fmt: skip
    accounts.clear_account_cache()
    account = accounts.get_account(portal.account)
    [crm] = account.settings.crms
    return account, with_secrets(account.id, crm)


def bitrix_utc(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def test_a_late_card_registers_the_call_with_its_own_start(portal: Portal, now: list[datetime]) -> None:  # noqa: F811
    """The webhook makes the event at its receipt (T0); the card queue reaches it 40 s later, as under
    a busy hour behind Bitrix24's 2 requests a second: CALL_START_DATE is still T0."""
    from callbridge.core import live
    from callbridge.crm.bitrix24.cards import send_live

    account, crm = card_account(portal)
    ringing = live.event(account, "ringing", "late-card-1", "79165550123", ("andy",), direction="in")
    now[0] = T0 + timedelta(seconds=40)
    assert send_live(account, crm, live.message(account.id, crm.name, ringing))
    [registered] = portal.fake.calls.values()
    assert registered["CALL_START_DATE"] == bitrix_utc(T0)


def test_a_queued_card_of_an_older_release_falls_back_to_now(portal: Portal, now: list[datetime]) -> None:  # noqa: F811
    from callbridge.core.live import LiveEvent
    from callbridge.crm.bitrix24.cards import send_live

    account, crm = card_account(portal)
    old = LiveEvent("ringing", "old-card-1", "+79165550123", ("andy",), direction="in").as_dict()
    old.pop("at")
    assert send_live(account, crm, {"live": old})
    [registered] = portal.fake.calls.values()
    assert registered["CALL_START_DATE"] == bitrix_utc(clock.now())


def test_two_pbx_calls_from_one_number_to_one_manager_are_two_bitrix24_calls(portal: Portal) -> None:  # noqa: F811
    """A missed caller redials within minutes: same number, type and manager. Registered before the
    first is finished (one delivery batch registers both, then finishes both), the portal's repeat
    rule would hand the second the first one's CALL_ID - unless each names its own physical call."""
    first, second = day(portal.account, 2)
    second.update(phone=first["phone"], phone_raw=first["phone_raw"])
    assert kinds(portal.send([first, second])) == ["ok", "ok"]
    assert len(portal.fake.calls) == 2 and len(portal.fake.finished) == 2
    assert sorted(c["EXTERNAL_CALL_ID"] for c in portal.fake.finished.values()) == sorted(
        [first["call_id"], second["call_id"]]
    )


def test_a_card_and_the_delivery_of_one_call_stay_one_call_and_a_redial_is_another(
    portal: Portal,  # noqa: F811
    now: list[datetime],  # noqa: F811
) -> None:
    from callbridge.core import live
    from callbridge.crm.bitrix24.cards import send_live

    account, crm = card_account(portal)
    first, second = day(portal.account, 2)
    for call in (first, second):
        call.update(phone="+79165550123", phone_raw="79165550123", started_at=clock.iso(T0))
        ringing = live.event(account, "ringing", call["call_id"], call["phone"], ("andy",), direction="in")
        assert send_live(account, crm, live.message(account.id, crm.name, ringing))
    assert len(portal.fake.calls) == 2  # the redial rang while the first was not finished
    assert kinds(portal.send([first, second])) == ["ok", "ok"]
    assert len(portal.fake.calls) == 2 and len(portal.fake.finished) == 2


def test_a_portal_without_call_statistics_parks_nothing(portal: Portal) -> None:  # noqa: F811
    """voximplant.statistic.get answers ERROR_METHOD_NOT_FOUND: the check of a finish whose answer
    was lost cannot run. The documented fallback: the finish is sent again (refused for a finished
    call: done) and the recording again (it replaces the file) - never a batch retried until parked."""
    portal.fake.without.add("voximplant.statistic.get")
    calls = day(portal.account, 3)
    portal.fake.lose_answers["telephony.externalcall.finish"] = 1
    assert kinds(portal.send(calls, recorded=True)) == ["transient"] * 3
    results = portal.send(calls, recorded=True)
    assert kinds(results) == ["ok"] * 3 and all(r.detail.get("duplicate") for r in results)
    assert len(portal.fake.calls) == 3 and len(portal.fake.finished) == 3 and len(portal.fake.records) == 3
    assert kinds(portal.send(calls, recorded=True)) == ["ok"] * 3  # done: nothing more is sent
    assert portal.fake.methods.count("telephony.externalcall.finish") == 6
