"""Click-to-call from Bitrix24 is replay-safe (docs/bitrix24.md, "Click-to-call"): against moto,
the fake Bitrix24 portal and a fake telediscount on 127.0.0.1, one authentic OnExternalCallStart
sent ten times makes the PBX dial once; and a click whose CALL_ID the portal does not know never
breaks the delivery of the real call, which is registered and finished as a call of its own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from callbridge.core import accounts
from callbridge.core.config import AccountConfig
from callbridge.crm.bitrix24.calls import CALL_ID
from callbridge.features import clicktocall
from callbridge.features.admin import apply_account
from callbridge.infra import secrets
from callbridge.store import crm_calls
from tests.contract.conftest import T0, account_id, stack_env  # noqa: F401  (fixtures, by import)
from tests.contract.test_crm_contract import canonical
from tests.fakes.base import serve as serve_pbx
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.crm_server import serve
from tests.fakes.telediscount import FakeTelediscount
from tests.integration.test_bitrix24 import CODE, Portal, kinds, portal  # noqa: F401  (a fixture, by import)
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(60)
APP_TOKEN = "b24-application-token-0001"
TD_KEY = "td-api-key-000000009"


@pytest.fixture
def clickable(account_id: str) -> Iterator[tuple[FakeBitrix24, FakeTelediscount]]:  # noqa: F811
    """An account on telediscount (its `outcome` places calls) with Bitrix24 as its CRM, whose
    application posts OnExternalCallStart to us."""
    fake, pbx = FakeBitrix24(code=CODE, users={7: "672"}), FakeTelediscount(api_key=TD_KEY, outcome_call_id="TD-9")
    with serve(fake) as url, serve_pbx(pbx) as base:
        data = {
            "account": account_id,
            "timezone": "Europe/Moscow",
            "phone_region": "RU",
            "pbx": {
                "kind": "telediscount",
                "api_url": f"{base}/api.php/telephony",
                "api_key": TD_KEY,
                "webhook_secret": "td-webhook-secret-0009",
            },
            "crms": [{"kind": "bitrix24", "webhook_url": f"{url}/rest/1/{CODE}/", "application_token": APP_TOKEN}],
            "users": [{"pbx_user": "olga", "sip_account": "SIP/0000000672", "extension": "672", "bitrix24_user_id": 7}],
        }
        apply_account(AccountConfig.model_validate(trusting_fakes(data)))
        accounts.clear_account_cache()
        secrets.reset_secret_cache()
        yield fake, pbx
    assert fake.errors == [] and pbx.errors == []


def test_one_click_sent_ten_times_dials_once(account_id: str, clickable: tuple[FakeBitrix24, FakeTelediscount]) -> None:  # noqa: F811
    portal_fake, pbx = clickable
    click = {**portal_fake.click(7, "+79039998877"), "auth[application_token]": APP_TOKEN}
    answers = [clicktocall.crm_make_call(account_id, "bitrix24", click) for _ in range(10)]
    assert pbx.count("outcome") == 1
    assert {(a.pbx_user, a.phone, a.pbx_call_id) for a in answers} == {("olga", "+79039998877", "TD-9")}
    # Another click (another CALL_ID) is a call of its own. On another number: Bitrix24 itself hands
    # out the same CALL_ID for a register repeated with the same parameters (tests/fakes/bitrix24.py).
    again = {**portal_fake.click(7, "+79039998800"), "auth[application_token]": APP_TOKEN}
    clicktocall.crm_make_call(account_id, "bitrix24", again)
    assert pbx.count("outcome") == 2


def test_a_click_the_pbx_refused_may_be_sent_again(
    account_id: str,  # noqa: F811
    clickable: tuple[FakeBitrix24, FakeTelediscount],
) -> None:
    portal_fake, pbx = clickable
    click = {**portal_fake.click(7, "79039998877"), "auth[application_token]": APP_TOKEN, "data[USER_ID]": "99"}
    with pytest.raises(clicktocall.UnknownUser):  # nobody is mapped to that manager: nothing dialled
        clicktocall.crm_make_call(account_id, "bitrix24", click)
    click["data[USER_ID]"] = "7"
    clicktocall.crm_make_call(account_id, "bitrix24", click)
    assert pbx.count("outcome") == 1


def test_a_click_whose_call_id_the_portal_does_not_know_never_breaks_the_delivery(portal: Portal) -> None:  # noqa: F811
    [call] = [canonical(portal.account, 1, "out", "answered", 42, started=T0)]
    now = int(time.time())
    made_up = {CALL_ID: "externalCall.made-up-0001", "via": "click", "clicked_at": now}
    crm_calls.claim(portal.account, call["call_id"], "bitrix24", made_up, now)
    results = portal.send([call])
    assert kinds(results) == ["ok"], results
    stored: dict[str, Any] = crm_calls.get(portal.account, call["call_id"], "bitrix24") or {}
    assert stored[CALL_ID] != made_up[CALL_ID] and stored["via"] == "click_unknown"
    assert portal.fake.finished[stored[CALL_ID]]["DURATION"] == 42
    # Delivered means done: sent again, it costs nothing new.
    assert kinds(portal.send([call])) == ["ok"]
    # The one request the made-up id cost (the fake counts it among the client's mistakes, but only
    # the portal could tell the id is unknown): asked once, never again.
    assert portal.fake.errors == [f"telephony.externalcall.finish: unknown CALL_ID {made_up[CALL_ID]!r}"]
    portal.fake.errors.clear()
