"""Cloud PBX live events are facts about a leg, whatever order they arrive in (docs/cloudpbx.md,
"Events out of order"): through the webhook handler and the settle worker against moto, every
permutation of the events of an answered, a missed and two group-rung calls, each with a retry of
one of its events arriving later, ends in the same final call as the ordered replay."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from callbridge.infra import clock, settings
from callbridge.store import calls
from tests.integration.test_cloudpbx_webhooks import drain_settle_queue, post
from tests.support import seed_event

pytestmark = pytest.mark.timeout(600)
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
Event = tuple[str, str]  # (Cloud PBX event type, user)

SCENARIOS: dict[str, list[Event]] = {
    "answered": [("INCOMING", "andy"), ("ACCEPTED", "andy"), ("COMPLETED", "andy")],
    "missed": [("INCOMING", "andy"), ("CANCELLED", "andy")],
    "group_missed": [("INCOMING", "andy"), ("INCOMING", "daria"), ("CANCELLED", "andy"), ("CANCELLED", "daria")],
    "group_answered": [
        ("INCOMING", "andy"),
        ("INCOMING", "daria"),
        ("CANCELLED", "andy"),
        ("ACCEPTED", "daria"),
        ("COMPLETED", "daria"),
    ],
}
# What a final call is, as the CRMs get it; receipt times are frozen during a replay, so that the
# order of arrival is the only thing that differs.
FINAL = ("final", "direction", "outcome", "user", "users_rang", "missed_reason", "duration", "started_at", "phone")


@pytest.fixture
def frozen(cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[list[datetime]]:
    monkeypatch.setenv("MISSED_CALL_SETTLE_SECONDS", "0")
    monkeypatch.setenv("HISTORY_QUIET_SECONDS", "1")  # an answered call without its history: derived
    settings.reset_settings()
    now = [T0]
    clock.set_clock(lambda: now[0])
    try:
        yield now
    finally:
        clock.set_clock(None)


def replay(call_id: str, events: list[Event]) -> None:
    for kind, user in events:
        assert post(seed_event(kind, user, callid=call_id))[0] == 200


def settle_all(cloud: dict[str, str], now: list[datetime]) -> None:
    """Everything quiet for an hour: the settle worker takes what the events queued."""
    now[0] = T0 + timedelta(hours=1)
    time.sleep(1.2)  # HISTORY_QUIET_SECONDS' queue delay, in real time
    drain_settle_queue(cloud)


def final(call_id: str) -> dict[str, Any]:
    call = calls.get_call("demo", call_id) or {}
    assert not call.get("ringing"), call
    return {k: call.get(k) for k in FINAL}


def orders(events: list[Event]) -> Iterator[list[Event]]:
    """Every order of `events`, each with a PBX retry of one of its events arriving some time after
    the original (which event and where rotates from one order to the next; a retry arriving
    before its original is the original arriving earlier: another order). Up to three events:
    each order without a retry and with every retry at every later place."""
    if len(events) <= 3:  # small enough for every order with every retry at every later place
        for order in itertools.permutations(events):
            yield list(order)
            for retried, at in ((r, a) for r in range(len(order)) for a in range(r + 1, len(order) + 1)):
                yield [*order[:at], order[retried], *order[at:]]
        return
    for n, order in enumerate(itertools.permutations(events)):
        retried = n % len(order)
        at = retried + 1 + (n // len(order)) % (len(order) - retried)
        yield [*order[:at], order[retried], *order[at:]]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_order_ends_in_the_ordered_call(cloud: dict[str, str], frozen: list[datetime], scenario: str) -> None:
    events = SCENARIOS[scenario]
    replays = {f"{scenario}-ordered": events} | {f"{scenario}-{n}": o for n, o in enumerate(orders(events))}
    # Calls in parallel (the Lambda service runs webhooks of different calls at once), each call's
    # events one after the other in its order.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda item: replay(*item), replays.items()))
    settle_all(cloud, frozen)
    expected = final(f"{scenario}-ordered")
    assert expected["final"] is True
    assert expected["outcome"] == ("missed" if "missed" in scenario else "answered")
    different = {c: (o, got) for c, o in replays.items() if (got := final(c)) != expected}
    assert not different, f"{len(different)} of {len(replays)} orders end otherwise than {expected}: {different}"


def test_a_ring_arriving_after_its_stop_is_the_missed_call_of_a_pbx_retry(
    cloud: dict[str, str], frozen: list[datetime]
) -> None:
    """The finding's order: the INCOMING answered 503 during a store fault, the CANCELLED 200, the
    PBX's retry of the INCOMING 200. The call is missed, not ringing for ever."""
    replay("retried", [("CANCELLED", "andy"), ("INCOMING", "andy")])
    assert not (calls.get_call("demo", "retried") or {}).get("ringing")
    settle_all(cloud, frozen)
    call = calls.get_call("demo", "retried") or {}
    assert (call.get("final"), call.get("outcome"), call.get("missed_reason")) == (True, "missed", "no_answer")
