"""A busy day into Bitrix24, through the local runtime (a real `python -m callbridge_local`): 120 Cloud
PBX calls started two a second over HTTP (tests/e2e/busy_day.py) - answered, group-rung, missed, a
missed caller who redials at once, outgoing, withheld, and clicks in Bitrix24 whose `makeCall` the
PBX answers with its call id or with an empty 200 - with recordings, while the strict fake portal
(tests/fakes/bitrix24.py: its 2 requests a second, the 30-minute repeat rule as documented, downloads
without redirects) loses answers after saving. It ends with one registered and finished Bitrix24 call
per PBX call (a click's own CALL_ID finished, never a second one registered), each with its own start
(±2 s), user, duration, status and recording (a withheld caller filed as "withheld"), no card after
its call ended, and nothing twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest

from tests.e2e.busy_day import CLICKS, blind_numbers, callid_of, kind_of, phone_of, play_day
from tests.e2e.test_bitrix24_e2e import ANDY, APP_TOKEN, AUDIO, DARIA, FORM, World, drain, pbx_post, world  # noqa: F401  (a fixture)
from tests.support import form

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

CALLS = 120
EVERY_S = 0.5  # a call starts every half second
BITRIX24_USERS = {"andy": ANDY, "daria": DARIA}

EXPECTED = {  # kind -> (TYPE, USER_ID, DURATION, STATUS_CODE, recorded)
    "answered": (2, ANDY, 30, "200", True),
    "group": (2, DARIA, 40, "200", True),
    "missed": (2, DARIA, 0, "304", False),
    "redial": (2, ANDY, 0, "304", False),
    "out": (1, ANDY, 20, "200", True),
    "withheld": (2, ANDY, 0, "304", False),
    "click": (1, ANDY, 25, "200", True),
    "blind_click": (1, DARIA, 25, "200", True),
}


@dataclass
class Day:
    started: dict[int, float]  # call n -> when it started (epoch seconds)
    clicked: dict[int, str]  # click call n -> the CALL_ID Bitrix24 registered for the click
    pbx_ids: dict[int, str]  # click call n -> the call id makeCall answered (none: the PBX named none)


@pytest.fixture
def day(world: World) -> Iterator[Day]:  # noqa: F811
    """The day, played at its pace; the runtime's queue drivers work meanwhile, as they would."""
    portal, link = world.portal, world.files.url("/rec.mp3")
    portal.lose_answers.update({"telephony.externalcall.register": 2, "telephony.externalcall.finish": 2,
                                "telephony.externalCall.attachRecord": 2})  # fmt: skip
    world.pbx.make_call_without_id_to.update(blind_numbers(CALLS))
    clicked: dict[int, str] = {}
    pbx_ids: dict[int, str] = {}

    def click(n: int) -> str | None:
        """A manager clicks the number in Bitrix24: the portal registers the call and posts
        ONEXTERNALCALLSTART to our handler, which asks the PBX's makeCall."""
        event = portal.click(BITRIX24_USERS[CLICKS[kind_of(n)]], "+" + phone_of(n))
        clicked[n] = event["data[CALL_ID]"]
        answer = world.http.post("/v1/b24/bitrix24/make-call", headers=FORM,
                                 content=form(**event, **{"auth[application_token]": APP_TOKEN}))  # fmt: skip
        assert answer.status_code == 200, answer.text
        pbx_id = answer.json().get("pbx_call_id")
        if not pbx_id:
            return None
        pbx_ids[n] = str(pbx_id)
        return pbx_ids[n]

    started = play_day(CALLS, EVERY_S, link, lambda fields: pbx_post(world, fields), click)
    yield Day(started, clicked, pbx_ids)


def test_a_busy_day_is_one_bitrix24_call_per_pbx_call(world: World, day: Day) -> None:  # noqa: F811
    portal = world.portal
    filed_kinds = list(range(CALLS))  # withheld callers too, as "withheld" (docs/bitrix24.md)
    deadline = time.monotonic() + 240
    while len(portal.finished) < len(filed_kinds) and time.monotonic() < deadline:
        drain(world)
        assert world.http.post("/_local/schedules/DeliveryDrainFunction").status_code == 200
        time.sleep(1.0)
    drain(world)

    assert portal.errors == [], portal.errors[:20]
    clicks = [n for n in filed_kinds if kind_of(n) in CLICKS]
    assert sorted(day.clicked) == clicks and sorted(day.pbx_ids) == [n for n in clicks if kind_of(n) == "click"]
    assert len(set(day.pbx_ids.values())) == len(day.pbx_ids)  # the PBX named each clicked call its own
    # One Bitrix24 call per PBX call: ours registered under the PBX's call id, a click's the one
    # Bitrix24 registered for it (no EXTERNAL_CALL_ID), finished - never a second one registered.
    by_call = {call["EXTERNAL_CALL_ID"]: call_id for call_id, call in portal.calls.items() if call["EXTERNAL_CALL_ID"]}
    assert sorted(by_call) == sorted(callid_of(n) for n in filed_kinds if n not in day.clicked)
    assert len(portal.calls) == len(filed_kinds) and sorted(portal.finished) == sorted(portal.calls)
    for n in filed_kinds:
        kind = kind_of(n)
        call_id = day.clicked.get(n) or by_call[callid_of(n)]
        filed = portal.finished[call_id]
        kind_type, user, duration, status, recorded = EXPECTED[kind]
        assert (filed["TYPE"], filed["USER_ID"], filed["DURATION"], filed["STATUS_CODE"]) == (
            kind_type, user, duration, status,
        ), (n, kind, filed)  # fmt: skip
        assert filed["PHONE_NUMBER"] == ("+" + phone_of(n) if phone_of(n) else "withheld")
        start = datetime.fromisoformat(filed["CALL_START_DATE"]).timestamp()
        assert abs(start - day.started[n]) <= 2.0, (n, kind, filed["CALL_START_DATE"], day.started[n])
        assert (call_id in portal.records) is recorded, (n, kind)
        assert not recorded or portal.records[call_id] == AUDIO  # downloaded by the portal, bytes intact
    assert all(count == 1 for count in portal.attached.values())  # each recording attached once
    # Cards: never shown after the call was filed (the fake refuses that: errors above), and for
    # each manager no card shown again after it was hidden.
    for call_id in portal.calls:
        seen: dict[int, list[str]] = {}
        for action, card_call, users in portal.cards:
            if card_call == call_id:
                for user in users:
                    seen.setdefault(user, []).append(action)
        for user, actions in seen.items():
            after_hide = actions[actions.index("hide") :] if "hide" in actions else []
            assert "show" not in after_hide, (call_id, user, actions)
