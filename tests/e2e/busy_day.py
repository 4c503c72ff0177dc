"""A busy day of Cloud PBX calls, played over HTTP at its own pace into a running local runtime: the
replays into each CRM (tests/e2e/test_*_busy_day_e2e.py) share it.

Call n is of kind KINDS[n % len(KINDS)]: answered, group-rung, missed (daria's phone rings first), a
missed caller who redials at once, outgoing, withheld, and two click-to-calls - one the PBX's
`makeCall` answers with its call id, one it answers with an empty 200 (docs/protocols/cloudpbx.md).
A click is made in the CRM (the replay's `click` callback: Bitrix24's ONEXTERNALCALLSTART, retailCRM's
make-call request) and followed by the PBX's `out` history, under the call id `makeCall` gave or,
without one, under the PBX's own."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from tests.support import seed_event, seed_history

KINDS = ("answered", "group", "missed", "redial", "out", "withheld", "click", "blind_click")
CLICKS = {"click": "andy", "blind_click": "daria"}  # click kind -> the manager who clicks
STEP_S = 0.2  # between the webhooks of one call
# From a click to its PBX call's history (the call is talked through): longer than a card's trip
# through LiveCardQueue, so that the click's card is out before its call is final.
TALK_S = 3.0

# (callid a click's PBX call is known by, or None: the PBX's own) <- the CRM-side click of call n
Click = Callable[[int], str | None]
Post = Callable[[dict[str, Any]], None]


def kind_of(n: int) -> str:
    return KINDS[n % len(KINDS)]


def callid_of(n: int) -> str:
    """The PBX's own call id of call n (a click's call may be known by makeCall's instead)."""
    return f"busy-{n:03d}"


def phone_of(n: int) -> str:
    """The client's number, as the PBX writes it (digits)."""
    kind = kind_of(n)
    if kind == "redial":
        return phone_of(n - 1)  # the caller of the missed call just before rings again
    if kind == "withheld":
        return ""
    return f"7916{n:07d}"


def blind_numbers(calls: int) -> set[str]:
    """The numbers whose `makeCall` the PBX answers without a call id (FakeCloudPbx.make_call_without_id_to)."""
    return {phone_of(n) for n in range(calls) if kind_of(n) == "blind_click"}


def script(n: int, link: str, callid: str | None = None) -> list[dict[str, Any]]:
    """The webhooks of call n, in the order the PBX sends them (a history's start: filled in when sent)."""
    kind, phone = kind_of(n), phone_of(n)
    callid = callid or callid_of(n)

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
    if kind in CLICKS:
        return [hist(CLICKS[kind], type="out", duration="25", link=link)]
    return [hist("andy", type="out", duration="20", link=link)]


def _play(n: int, due: float, link: str, post: Post, click: Click, started: dict[int, float]) -> None:
    time.sleep(max(0.0, due - time.monotonic()))
    started[n] = time.time()
    callid = None
    if kind_of(n) in CLICKS:
        callid = click(n)  # the manager clicks; the PBX rings him, then dials the client
        time.sleep(TALK_S)
    for fields in script(n, link, callid):
        if fields["cmd"] == "history":
            # The PBX's own start of the call (compact UTC), as its history sends it.
            fields["start"] = datetime.fromtimestamp(int(started[n]), UTC).strftime("%Y%m%dT%H%M%SZ")
        post(fields)
        time.sleep(STEP_S)


def play_day(calls: int, every_s: float, link: str, post: Post, click: Click) -> dict[int, float]:
    """Start call n at n * every_s seconds, each on its own thread; returns when each call started
    (epoch seconds), once every webhook was answered. The day must keep its pace (at least 1 call/s)."""
    started: dict[int, float] = {}
    begin = time.monotonic()
    with ThreadPoolExecutor(max_workers=16) as pool:
        for result in [pool.submit(_play, n, begin + n * every_s, link, post, click, started) for n in range(calls)]:
            result.result()
    took = time.monotonic() - begin
    assert calls / took >= 1.0, f"the day was played at {calls / took:.2f} calls a second"
    return started
