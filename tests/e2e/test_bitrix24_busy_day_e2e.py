"""A busy day into Bitrix24, through the local runtime (a real `python -m callbridge_local`): 120 Cloud
PBX calls started two a second over HTTP - answered, group-rung, missed, a missed caller who redials
at once, outgoing, withheld - with recordings, while the strict fake portal (tests/fakes/bitrix24.py:
its 2 requests a second, the 30-minute repeat rule as documented, downloads without redirects)
loses answers after saving. It ends with one registered and finished Bitrix24 call per PBX call,
each with its own start (±2 s), user, duration, status and recording, no card after its call ended,
and nothing twice."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.test_bitrix24_e2e import ANDY, AUDIO, DARIA, World, drain, pbx_post, world  # noqa: F401  (a fixture)
from tests.support import seed_event, seed_history

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

CALLS = 120
EVERY_S = 0.5  # a call starts every half second
STEP_S = 0.2  # between the webhooks of one call
KINDS = ("answered", "group", "missed", "redial", "out", "withheld")


def phone_of(n: int) -> str:
    kind = KINDS[n % len(KINDS)]
    if kind == "redial":
        return phone_of(n - 1)  # the caller of the missed call just before rings again
    if kind == "withheld":
        return ""
    return f"7916{n:07d}"


def script(n: int, link: str) -> list[dict[str, Any]]:
    """The webhooks of call n, in the order the PBX sends them (start: filled in when sent)."""
    kind, callid, phone = KINDS[n % len(KINDS)], f"busy-{n:03d}", phone_of(n)

    def ev(kind_: str, user: str) -> dict[str, Any]:
        return seed_event(kind_, user, callid=callid, phone=phone)

    def hist(user: str, **fields: Any) -> dict[str, Any]:
        return seed_history(callid=callid, phone=phone, user=user, **fields)

    if kind == "answered":
        return [ev("INCOMING", "andy"), ev("ACCEPTED", "andy"), ev("COMPLETED", "andy"),
                hist("andy", duration="30", link=link)]  # fmt: skip
    if kind == "group":
        return [ev("INCOMING", "andy"), ev("INCOMING", "daria"), ev("CANCELLED", "andy"), ev("ACCEPTED", "daria"),
                ev("COMPLETED", "daria"), hist("daria", duration="40", link=link)]  # fmt: skip
    if kind == "missed":  # daria's phone rings first: the missed call's owner (docs/missed-calls.md)
        return [ev("INCOMING", "daria"), ev("INCOMING", "andy"), ev("CANCELLED", "daria"), ev("CANCELLED", "andy")]
    if kind in ("redial", "withheld"):
        return [ev("INCOMING", "andy"), ev("CANCELLED", "andy")]
    return [hist("andy", type="out", duration="20", link=link)]


EXPECTED = {  # kind -> (TYPE, USER_ID, DURATION, STATUS_CODE, recorded)
    "answered": (2, ANDY, 30, "200", True),
    "group": (2, DARIA, 40, "200", True),
    "missed": (2, DARIA, 0, "304", False),
    "redial": (2, ANDY, 0, "304", False),
    "out": (1, ANDY, 20, "200", True),
    "withheld": (2, ANDY, 0, "304", False),
}


def play(bridge: World, n: int, due: float, link: str, started: dict[int, float]) -> None:
    time.sleep(max(0.0, due - time.monotonic()))
    for i, fields in enumerate(script(n, link)):
        if i == 0:
            started[n] = time.time()
        if fields["cmd"] == "history":
            # The PBX's own start of the call (compact UTC), as its history sends it.
            fields["start"] = datetime.fromtimestamp(int(started[n]), UTC).strftime("%Y%m%dT%H%M%SZ")
        pbx_post(bridge, fields)
        time.sleep(STEP_S)


@pytest.fixture
def day(world: World) -> Iterator[dict[int, float]]:  # noqa: F811
    """The day, played at its pace; the runtime's queue drivers work meanwhile, as they would."""
    portal, link = world.portal, world.files.url("/rec.mp3")
    portal.lose_answers.update({"telephony.externalcall.register": 2, "telephony.externalcall.finish": 2,
                                "telephony.externalCall.attachRecord": 2})  # fmt: skip
    started: dict[int, float] = {}
    begin = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for result in [pool.submit(play, world, n, begin + n * EVERY_S, link, started) for n in range(CALLS)]:
            result.result()
    took = time.monotonic() - begin
    assert CALLS / took >= 1.0, f"the day was played at {CALLS / took:.2f} calls a second"
    yield started


def test_a_busy_day_is_one_bitrix24_call_per_pbx_call(world: World, day: dict[int, float]) -> None:  # noqa: F811
    portal = world.portal
    filed_kinds = list(range(CALLS))  # withheld callers too, as "withheld" (docs/bitrix24.md)
    deadline = time.monotonic() + 240
    while len(portal.finished) < len(filed_kinds) and time.monotonic() < deadline:
        drain(world)
        assert world.http.post("/_local/schedules/DeliveryDrainFunction").status_code == 200
        time.sleep(1.0)
    drain(world)

    assert portal.errors == [], portal.errors[:20]
    by_call = {call["EXTERNAL_CALL_ID"]: (call_id, call) for call_id, call in portal.calls.items()}
    assert sorted(by_call) == sorted(f"busy-{n:03d}" for n in filed_kinds)  # one registered call per call
    assert len(portal.calls) == len(filed_kinds) and sorted(portal.finished) == sorted(portal.calls)
    for n in filed_kinds:
        kind = KINDS[n % len(KINDS)]
        call_id, _ = by_call[f"busy-{n:03d}"]
        filed = portal.finished[call_id]
        kind_type, user, duration, status, recorded = EXPECTED[kind]
        assert (filed["TYPE"], filed["USER_ID"], filed["DURATION"], filed["STATUS_CODE"]) == (
            kind_type, user, duration, status,
        ), (n, kind, filed)  # fmt: skip
        assert filed["PHONE_NUMBER"] == ("+" + phone_of(n) if phone_of(n) else "withheld")
        start = datetime.fromisoformat(filed["CALL_START_DATE"]).timestamp()
        assert abs(start - day[n]) <= 2.0, (n, kind, filed["CALL_START_DATE"], day[n])
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
