"""telediscount reconciliation against moto (server mode) and the fake telediscount API on 127.0.0.1
(docs/protocols/telediscount.md, "Webhooks can be lost"): `get_calls` has no date filter, so a run
asks it by `api_call_id` about the calls it knows began, and reads the whole list only every
TELEDISCOUNT_FULL_SWEEP_MINUTES."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import pbx_webhook as telediscount
from callbridge.core import accounts
from callbridge.core.config import AccountConfig
from callbridge.features.admin import apply_account
from callbridge.infra import clock, secrets
from callbridge.pbx.telediscount.reconcile import reconcile_account
from callbridge.store import calls
from tests.fakes.base import serve
from tests.fakes.telediscount import FakeTelediscount
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(60)
KEY, SECRET = "td-reconcile-key-0001", "td-reconcile-secret-01"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def fake(cloud: dict[str, str]) -> Iterator[FakeTelediscount]:
    peer = FakeTelediscount(api_key=KEY)
    with serve(peer) as base:
        config = {
            "account": "tdr", "phone_region": "RU",
            "pbx": {"kind": "telediscount", "api_url": f"{base}/api.php/telephony", "api_key": KEY,
                    "webhook_secret": SECRET},
            "users": [{"pbx_user": "olga", "sip_account": "SIP/0000000672"}],
        }  # fmt: skip
        apply_account(AccountConfig.model_validate(trusting_fakes(config)))
        accounts.clear_account_cache()
        secrets.reset_secret_cache()
        yield peer


@pytest.fixture
def now() -> Iterator[list[datetime]]:
    current = [T0]
    clock.set_clock(lambda: current[0])
    try:
        yield current
    finally:
        clock.set_clock(None)


def incoming(now: list[datetime], call_id: str, at: datetime) -> None:
    """The `incoming` webhook of a call that begins at `at`, received then."""
    later, now[0] = now[0], at
    event = {"rawPath": f"/v1/tdr/telediscount/{SECRET}/incoming",
             "pathParameters": {"account": "tdr", "secret": SECRET},
             "queryStringParameters": {"num_a": "79039998877", "num_m": "79037778899", "api_call_id": call_id,
                                       "setup_time": str(int(at.timestamp()))}}  # fmt: skip
    assert telediscount.handler(event, None)["statusCode"] == 200
    now[0] = max(later, at)


def record(call_id: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"api_call_id": call_id, "setup_time": str(int(at.timestamp())), "service_name": "ivr",
            "num_a": "79039998877", "num_m": "79037778899", "num_b": "SIP/0000000672", "connection_time": "30",
            **fields}  # fmt: skip


def stored(call_id: str) -> bool:
    call = calls.get_call("tdr", call_id)
    return bool(call and call.get("final"))


def test_runs_between_full_lists_ask_only_about_the_calls_that_began(
    fake: FakeTelediscount, now: list[datetime]
) -> None:
    # Before the first run: L1 began (its `finished` is lost); the whole list is read once.
    incoming(now, "L1", T0 - timedelta(minutes=20))
    fake.calls = [record("L1", T0 - timedelta(minutes=20))]
    first = reconcile_account("tdr")
    assert (first.full_list, first.stored) == (True, 1) and stored("L1")
    assert fake.get_calls_asked() == [{}]

    # L2 begins, its `finished` is lost too; B1 lost both webhooks; R1 began 30 s before the run.
    now[0] = T0 + timedelta(minutes=15)
    incoming(now, "L2", T0 + timedelta(minutes=5))
    incoming(now, "R1", now[0] - timedelta(seconds=30))
    fake.calls += [record("L2", T0 + timedelta(minutes=5), setup_time="98798798797897"),  # undated: asked by id
                   record("B1", T0 + timedelta(minutes=6)), record("R1", now[0], connection_time="0")]  # fmt: skip
    second = reconcile_account("tdr")
    # Only L2 is asked about: L1 is final, R1 is most likely still ringing.
    assert fake.get_calls_asked()[1:] == [{"api_call_id": "L2"}]
    assert (second.full_list, second.asked_by_id, second.stored) == (False, 1, 1)
    assert stored("L2") and not stored("B1") and not stored("R1")

    now[0] = T0 + timedelta(minutes=30)
    reconcile_account("tdr")  # R1 is asked about now, and stored; L2 is forgotten
    assert fake.get_calls_asked()[2:] == [{"api_call_id": "R1"}]
    assert stored("R1") and calls.get_call("tdr", "R1")["outcome"] == "missed"

    now[0] = T0 + timedelta(minutes=45)
    quiet = reconcile_account("tdr")  # nothing open: no request at all
    assert (quiet.full_list, quiet.asked_by_id) == (False, 0) and len(fake.get_calls_asked()) == 3

    now[0] = T0 + timedelta(minutes=61)
    sweep = reconcile_account("tdr")  # an hour after the last full list: B1, known only there
    assert sweep.full_list and fake.get_calls_asked()[3:] == [{}] and stored("B1")
    assert fake.errors == []


def test_too_many_open_calls_are_read_with_one_full_list(
    fake: FakeTelediscount, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    from callbridge.pbx.telediscount import reconcile

    reconcile_account("tdr")  # the first full list
    monkeypatch.setattr(reconcile, "MAX_BY_ID", 2)
    now[0] = T0 + timedelta(minutes=15)
    for n in range(3):
        incoming(now, f"M{n}", T0 + timedelta(minutes=n))
    fake.calls = [record(f"M{n}", T0 + timedelta(minutes=n)) for n in range(3)]
    result = reconcile_account("tdr")
    assert result.full_list and result.stored == 3
    assert fake.get_calls_asked() == [{}, {}]
