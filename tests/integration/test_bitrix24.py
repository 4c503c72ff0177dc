"""The Bitrix24 connector's exactly-once against a strict fake portal on 127.0.0.1 (over HTTP) and
the Calls table on moto: every way an answer can be lost after the portal saved, a retry long after
the portal's 30-minute register window, a delivery sent again after it succeeded - one registered
and one finished call each time, one recording. The day through the local runtime:
tests/e2e/test_bitrix24_e2e.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from callbridge import registry
from callbridge.core.config import UserMapping
from callbridge.core.model import Call
from callbridge.crm.base import Connector, DeliveryContext, RecordResult
from callbridge.crm.bitrix24.connector import NO_USER
from callbridge.infra.http import RetryPolicy
from callbridge.infra.netguard import normalize_hosts
from callbridge.store import crm_calls
from tests.contract.conftest import T0, account_id, stack_env  # noqa: F401  (fixtures, by import)
from tests.contract.test_crm_contract import canonical
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.crm_server import serve
from tests.support import host_port, trusting_fakes

pytestmark = pytest.mark.timeout(60)
CODE = "integration-b24-code-01"
ONCE = RetryPolicy(attempts=1)  # an HTTP failure goes straight back to the engine, as after the retries


class Portal:
    def __init__(self, fake: FakeBitrix24, url: str, account: str):
        self.fake, self.url, self.account = fake, url, account

    def connector(self, **settings: Any) -> Connector:
        model = registry.crm_settings_model("bitrix24")
        crm = model.model_validate({"kind": "bitrix24", "name": "bitrix24", "webhook_url": f"{self.url}/rest/1/{CODE}/",
                                    **settings})  # fmt: skip
        crm._trusted_hosts = normalize_hosts([host_port(self.url)])  # what AccountConfig gives a trusted fake
        ctx = DeliveryContext(
            account=self.account,
            timezone="Europe/Moscow",
            users=[
                UserMapping.model_validate({"pbx_user": "andy", "extension": "101", "bitrix24_user_id": 7}),
                UserMapping.model_validate({"pbx_user": "boris", "extension": "103"}),
            ],
            recording_url=lambda call_id: f"https://bridge.example.com/v1/{self.account}/recordings/{call_id}",
        )
        return registry.connector(crm, ctx, retry=ONCE)

    def send(self, calls: list[dict[str, Any]], recorded: bool = False, **settings: Any) -> list[RecordResult]:
        connector = self.connector(**settings)
        try:
            built = [connector.records(Call.from_item(c), recorded) for c in calls]
            assert all(not b.rejected for b in built), [b.rejected for b in built]
            return connector.send([r for b in built for r in b.records])
        finally:
            connector.close()


@pytest.fixture
def portal(account_id: str) -> Iterator[Portal]:  # noqa: F811
    fake = FakeBitrix24(code=CODE, users={7: "101", 9: "103"})
    with serve(fake) as url:
        yield Portal(fake, url, account_id)
    assert fake.errors == [], "the connector broke Bitrix24's protocol"


def day(account: str, count: int = 2) -> list[dict[str, Any]]:
    return [canonical(account, n, "in", "answered", 30 + n, started=T0 - timedelta(minutes=n)) for n in range(count)]


def kinds(results: list[RecordResult]) -> list[str]:
    return [r.kind for r in results]


def test_a_lost_register_answer_registers_nothing_new(portal: Portal) -> None:
    calls = day(portal.account)
    portal.fake.lose_answers["telephony.externalcall.register"] = 1
    assert kinds(portal.send(calls)) == ["transient", "transient"]
    assert len(portal.fake.calls) == 2 and portal.fake.finished == {}  # the portal registered them
    assert kinds(portal.send(calls)) == ["ok", "ok"]
    assert len(portal.fake.calls) == 2 and len(portal.fake.finished) == 2  # the same CALL_IDs, finished


def test_a_lost_finish_answer_is_found_in_the_statistics_and_not_sent_again(portal: Portal) -> None:
    calls = day(portal.account)
    portal.fake.lose_answers["telephony.externalcall.finish"] = 1
    assert kinds(portal.send(calls, recorded=True)) == ["transient", "transient"]
    assert len(portal.fake.finished) == 2 and len(portal.fake.records) == 2  # done, answer lost
    results = portal.send(calls, recorded=True)
    assert kinds(results) == ["ok", "ok"] and all(r.detail.get("duplicate") for r in results)
    assert portal.fake.methods.count("telephony.externalcall.finish") == 2  # once per call, never again
    assert portal.fake.methods.count("telephony.externalCall.attachRecord") == 2
    assert portal.fake.methods.count("voximplant.statistic.get") == 2


def test_a_finish_refused_because_an_unseen_attempt_finished_it_is_a_duplicate(portal: Portal) -> None:
    calls = day(portal.account, 1)
    assert kinds(portal.send(calls)) == ["ok"]
    # The store lost the "finished" mark (as if the write after the answer had failed).
    item = crm_calls.get(portal.account, calls[0]["call_id"], "bitrix24")
    assert item is not None
    crm_calls.put(portal.account, calls[0]["call_id"], "bitrix24", {k: v for k, v in item.items()
                  if k not in ("finished_at", "finish_sent_at", "expires_at")}, int(time.time()))  # fmt: skip
    results = portal.send(calls)
    assert kinds(results) == ["ok"] and results[0].detail.get("duplicate")
    assert len(portal.fake.finished) == 1 and len(portal.fake.calls) == 1


def test_a_lost_recording_answer_is_not_attached_twice(portal: Portal) -> None:
    calls = day(portal.account)
    portal.fake.lose_answers["telephony.externalCall.attachRecord"] = 1
    assert kinds(portal.send(calls, recorded=True)) == ["transient", "transient"]
    assert kinds(portal.send(calls, recorded=True)) == ["ok", "ok"]
    assert len(portal.fake.records) == 2 and len(portal.fake.finished) == 2
    assert sorted(portal.fake.attached.values()) == [1, 1]  # each file sent once


def test_a_delivery_sent_again_after_success_costs_no_request(portal: Portal) -> None:
    calls = day(portal.account)
    assert kinds(portal.send(calls, recorded=True)) == ["ok", "ok"]
    requests = portal.fake.requests
    results = portal.send(calls, recorded=True)
    assert kinds(results) == ["ok", "ok"] and all(r.detail.get("duplicate") for r in results)
    assert portal.fake.requests == requests


def test_a_retry_after_the_portals_30_minutes_uses_the_stored_call_id(portal: Portal) -> None:
    calls = day(portal.account, 1)
    portal.fake.lose_answers["telephony.externalcall.finish"] = 1
    portal.fake.lose_answers["voximplant.statistic.get"] = 1  # and the first check's answer too
    assert kinds(portal.send(calls)) == ["transient"]
    assert kinds(portal.send(calls)) == ["transient"]
    clock = portal.fake.now
    portal.fake.now = lambda: clock() + 3600  # an hour later: a register now would be a new call
    assert kinds(portal.send(calls)) == ["ok"]
    assert len(portal.fake.calls) == 1 and len(portal.fake.finished) == 1


def test_the_limit_error_inside_a_batch_is_a_slow_down_not_a_rejection(portal: Portal) -> None:
    calls = day(portal.account)
    portal.fake.limit_next = 1
    assert kinds(portal.send(calls)) == ["transient", "transient"]
    assert portal.fake.calls == {}  # refused before anything was done
    assert kinds(portal.send(calls)) == ["ok", "ok"]


def test_the_manager_is_a_user_id_an_inner_phone_or_the_default_never_a_guess(portal: Portal) -> None:
    andy, boris, ghost = day(portal.account, 3)
    boris.update(user="boris")
    ghost.update(user="ghost")
    assert kinds(portal.send([andy, boris])) == ["ok", "ok"]
    assert sorted(c["USER_ID"] for c in portal.fake.filed()) == [7, 9]  # boris by USER_PHONE_INNER 103
    connector = portal.connector()
    try:
        assert connector.records(Call.from_item(ghost), False).rejected == NO_USER
    finally:
        connector.close()
    assert kinds(portal.send([ghost], default_user_id=9)) == ["ok"]
    assert [c["USER_ID"] for c in portal.fake.filed()][-1] == 9


def test_an_answered_call_hides_the_other_ringing_managers_cards(portal: Portal) -> None:
    """A PBX that reports `answered` without ending the other legs (Bitrix24's simultaneous queue):
    the others' cards go when one answers, his goes when the call ends, then the call is filed."""
    from callbridge.core import accounts
    from callbridge.core.config import AccountConfig
    from callbridge.core.live import LiveEvent
    from callbridge.crm.base import with_secrets
    from callbridge.crm.bitrix24.cards import send_live
    from callbridge.crm.bitrix24.settings import Bitrix24Settings
    from callbridge.features.admin import apply_account

    apply_account(AccountConfig.model_validate(trusting_fakes({
        "account": portal.account, "phone_region": "RU",
        "pbx": {"kind": "cloudpbx", "crm_tokens": ["b24-integration-token-01"]},
        "crms": [{"kind": "bitrix24", "webhook_url": f"{portal.url}/rest/1/{CODE}/"}],
        "users": [{"pbx_user": "andy", "bitrix24_user_id": 7}, {"pbx_user": "boris", "bitrix24_user_id": 9}],
    })))  # fmt: skip
    accounts.clear_account_cache()
    account = accounts.get_account(portal.account)
    [crm] = account.settings.crms
    assert isinstance(crm, Bitrix24Settings)
    filled = with_secrets(account.id, crm)  # as the delivery worker hands it over: the webhook from SSM
    [call] = day(portal.account, 1)
    moments = [("ringing", ("andy",)), ("ringing", ("boris",)), ("answered", ("boris",)), ("ended", ("boris",))]
    for stage, users in moments:
        live = LiveEvent(stage, call["call_id"], call["phone"], users, direction="in")  # type: ignore[arg-type]
        assert send_live(account, filled, {"live": live.as_dict()})
    [call_id] = portal.fake.calls
    assert [(action, users) for action, _, users in portal.fake.cards] == [
        ("show", (7,)), ("show", (9,)), ("hide", (7,)), ("hide", (9,))
    ]  # fmt: skip
    call.update(user="boris")
    assert kinds(portal.send([call])) == ["ok"]
    assert portal.fake.finished[call_id]["USER_ID"] == 9 and len(portal.fake.calls) == 1
