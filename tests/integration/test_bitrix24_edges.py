"""Bitrix24 at its edges, against the strict fake portal (tests/fakes/bitrix24.py) on 127.0.0.1 and
the Calls table on moto: a card registers the call with the call's own start however late the card
queue gets to it, two PBX calls from one number to one manager are two Bitrix24 calls (the portal's
30-minute repeat rule compares number, type, user, line and EXTERNAL_CALL_ID, not the start), and a
portal without the statistics module does not hold deliveries back."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

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


def test_a_click_the_pbx_placed_without_an_id_is_finished_under_the_clicks_call_id(
    portal: Portal,  # noqa: F811
    now: list[datetime],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bitrix24 registered the clicked call itself (OnExternalCallStart); the PBX accepted without a
    call id, so the card goes under our placeholder, and the PBX's own call (its history, its callid)
    comes later: it finishes the click's CALL_ID - one Bitrix24 call, nothing registered anew. (The
    queue between the webhooks and the cards is played by handing each card message on in order.)"""
    from callbridge.core import live
    from callbridge.core.record import FinalCall, store_final
    from callbridge.core.terms import Direction, Marker, Outcome, StartSource
    from callbridge.crm.bitrix24.callbacks import call_placed, read_callback
    from callbridge.crm.bitrix24.cards import send_live
    from callbridge.features import clicktocall
    from callbridge.store import calls

    account, crm = card_account(portal)
    [andy] = [u for u in account.settings.users if u.pbx_user == "andy"]
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(live, "publish", lambda _, event: queued.append(live.message(account.id, crm.name, event)))
    clicked = portal.fake.click(7, "+79165550123")
    call_placed(account, crm, read_callback(clicked), "andy", "+79165550123", None)
    clicktocall._open_card(account, andy, "+79165550123", None)
    assert len(queued) == 1 and send_live(account, crm, queued[0])  # shown under the click's CALL_ID
    history = FinalCall(
        call_id="PBX-OUT-7", source="cloudpbx", marker=Marker("history", "out", "andy"), direction=Direction.OUT,
        outcome=Outcome.ANSWERED, phone="+79165550123", phone_raw="79165550123", started_at=clock.iso(now[0]),
        start_source=StartSource.PBX, duration=42, user="andy",
    )  # fmt: skip
    assert store_final(account, history, deliver=False)
    assert len(queued) == 2 and send_live(account, crm, queued[1])  # the placeholder's card closes
    stored = calls.get_call(portal.account, "PBX-OUT-7")
    assert stored is not None and stored["card_call_id"] == queued[0]["live"]["call_id"]
    assert kinds(portal.send([stored])) == ["ok"]
    [call_id] = portal.fake.calls  # the click's: nothing registered anew
    assert list(portal.fake.finished) == [call_id] and portal.fake.finished[call_id]["DURATION"] == 42
    assert [action for action, _, _ in portal.fake.cards] == ["show", "show", "hide"]


def pbx_event(account: str, kind: str, user: str, callid: str) -> None:
    """A Cloud PBX event through its webhook handler: the call's live state in the Calls table."""
    import cloudpbx
    from tests.support import form, http_event

    fields = {"cmd": "event", "type": kind, "phone": "79165550123", "user": user, "callid": callid,
              "crm_token": "b24-edges-token-0001"}  # fmt: skip
    answer = cloudpbx.handler(http_event(f"/v1/{account}/cloudpbx", form(**fields), account=account), None)
    assert answer["statusCode"] == 200


def test_a_ringing_card_that_comes_after_its_leg_ended_is_never_shown(portal: Portal) -> None:  # noqa: F811
    """Under load the card queue lags: andy's phone rang and stopped (the caller hung up) before his
    card's turn. Its hide was dropped (nothing registered yet); the card must not appear now."""
    from callbridge.core import live
    from callbridge.crm.bitrix24.cards import send_live

    account, crm = card_account(portal)
    pbx_event(account.id, "INCOMING", "andy", "LATE-LEG-1")
    pbx_event(account.id, "INCOMING", "boris", "LATE-LEG-1")
    pbx_event(account.id, "CANCELLED", "andy", "LATE-LEG-1")
    ended = live.event(account, "ended", "LATE-LEG-1", "79165550123", ("andy",))
    assert send_live(account, crm, live.message(account.id, crm.name, ended))  # nothing to hide yet
    for user in ("andy", "boris"):
        ringing = live.event(account, "ringing", "LATE-LEG-1", "79165550123", (user,), direction="in")
        assert send_live(account, crm, live.message(account.id, crm.name, ringing))
    assert [(action, users) for action, _, users in portal.fake.cards] == [("show", (9,))]  # boris still rings


def test_a_card_shown_while_its_leg_ended_is_hidden_at_once(
    portal: Portal,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The leg ends while its card is being registered (the hide found no CALL_ID and was dropped):
    once the card is up, the call's state is asked again and the card goes."""
    from callbridge.core import live
    from callbridge.crm.bitrix24 import cards

    account, crm = card_account(portal)
    pbx_event(account.id, "INCOMING", "andy", "RACE-1")
    ringing = live.event(account, "ringing", "RACE-1", "79165550123", ("andy",), direction="in")
    checks = iter([True, False])  # ringing when the card's turn came, ended once it was shown

    def racing(account_of: str, event: live.LiveEvent) -> bool:
        if next(checks, None) is False:
            pbx_event(account.id, "CANCELLED", "andy", "RACE-1")  # the PBX's CANCELLED lands meanwhile
        return live.still_ringing(account_of, event)

    monkeypatch.setattr(cards, "still_ringing", racing)
    assert cards.send_live(account, crm, live.message(account.id, crm.name, ringing))
    assert [(action, users) for action, _, users in portal.fake.cards] == [("show", (7,)), ("hide", (7,))]


def test_an_answer_by_an_unmapped_user_hides_every_card(portal: Portal) -> None:  # noqa: F811
    from callbridge.core import live
    from callbridge.crm.bitrix24.cards import send_live

    account, crm = card_account(portal)
    for stage, user in (("ringing", "andy"), ("ringing", "boris"), ("answered", "reception")):
        event = live.event(account, stage, "UNMAPPED-1", "79165550123", (user,), direction="in")  # type: ignore[arg-type]
        assert send_live(account, crm, live.message(account.id, crm.name, event))
    assert [(action, users) for action, _, users in portal.fake.cards] == [
        ("show", (7,)), ("show", (9,)), ("hide", (7, 9))
    ]  # fmt: skip


def test_a_hide_its_calls_finish_crossed_is_done_not_failed(portal: Portal) -> None:  # noqa: F811
    """Cards and calls go to the portal by separate ways at the same time: a hide checked while the
    call was not final may reach the portal after the finish, which hid every card and refuses the
    hide. The card is gone all the same: the hide counts as done, and nothing is retried."""
    from callbridge.core.live import LiveEvent
    from callbridge.crm.bitrix24.cards import send_live

    account, crm = card_account(portal)
    [call] = day(portal.account, 1)
    ring = LiveEvent("ringing", call["call_id"], call["phone"], ("andy",), direction="in")
    assert send_live(account, crm, {"live": ring.as_dict()})
    [call_id] = portal.fake.calls
    # The finish crosses the hide: the portal has filed the call, our store has not heard yet.
    portal.fake.finished[call_id] = {**portal.fake.calls[call_id], "CALL_ID": call_id}
    end = LiveEvent("ended", call["call_id"], call["phone"], ("andy",), direction="in")
    assert send_live(account, crm, {"live": end.as_dict()})
    assert portal.fake.late_hides == [call_id]
    assert portal.fake.errors == []
