"""A click-to-call the Cloud PBX accepts without naming its call (`makeCall` answers an empty 200):
the card opened under our placeholder and the PBX's own call that follows (its `history`, under
its callid) are one call in every CRM - matched by manager, number and time (callbridge.core.clicks).
Real HTTP to a fake Cloud PBX, retailCRM and Bitrix24 on 127.0.0.1; DynamoDB and SQS on moto; the
queued card and delivery messages run through the delivery function's handler."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

import cloudpbx
from callbridge.core import accounts
from callbridge.core.config import AccountConfig
from callbridge.features import clicktocall
from callbridge.features.admin import apply_account
from callbridge.infra import clock, secrets
from callbridge.store import calls
from tests.contract.conftest import account_id, now, stack_env  # noqa: F401  (fixtures, by import)
from tests.contract.harness import run_queued
from tests.fakes.cloudpbx_api import PATH, FakeCloudPbx
from tests.fakes.crm_server import serve
from tests.fakes.retailcrm import FakeRetailCrm
from tests.support import form, http_event, trusting_fakes

pytestmark = pytest.mark.timeout(60)
PBX_TOKEN, CRM_TOKEN = "c2c-edges-pbx-token-01", "c2c-edges-crm-token-01"
RETAIL_KEY, CLIENT_ID = "c2c-edges-retail-key-01", "c2c-edges-client-id-01"
NUMBER = "+79165550123"


def history_out(account: str, callid: str, user: str, started: datetime) -> None:
    fields = {"cmd": "history", "type": "out", "status": "Success", "phone": NUMBER.lstrip("+"), "user": user,
              "duration": "42", "callid": callid, "start": clock.iso(started), "crm_token": CRM_TOKEN}  # fmt: skip
    answer = cloudpbx.handler(http_event(f"/v1/{account}/cloudpbx", form(**fields), account=account), None)
    assert answer["statusCode"] == 200


@pytest.fixture
def pbx() -> Iterator[tuple[FakeCloudPbx, str]]:
    fake = FakeCloudPbx(token=PBX_TOKEN, make_call_without_id=True)
    with serve(fake) as url:
        yield fake, url
    assert fake.errors == []


def test_retailcrm_out_card_of_a_click_without_a_pbx_id_is_closed_by_the_pbx_call(
    pbx: tuple[FakeCloudPbx, str],
    account_id: str,  # noqa: F811
    now: list[datetime],  # noqa: F811
) -> None:
    fake_pbx, pbx_url = pbx
    retail = FakeRetailCrm(api_key=RETAIL_KEY)
    with serve(retail) as retail_url:
        apply_account(AccountConfig.model_validate(trusting_fakes({
            "account": account_id, "timezone": "Europe/Moscow", "phone_region": "RU",
            "pbx": {"kind": "cloudpbx", "api_url": f"{pbx_url}{PATH}", "token": PBX_TOKEN, "crm_tokens": [CRM_TOKEN]},
            "crms": [{"kind": "retailcrm", "base_url": retail_url, "api_key": RETAIL_KEY, "client_id": CLIENT_ID}],
            "users": [{"pbx_user": "andy", "retailcrm_user_id": 7, "retailcrm_code": "101"}],
        })))  # fmt: skip
        accounts.clear_account_cache()
        secrets.reset_secret_cache()
        query = {"clientId": CLIENT_ID, "code": "101", "userId": "7", "phone": NUMBER}
        placed = clicktocall.crm_make_call(account_id, "retailcrm", query)
        assert placed.pbx_call_id is None and fake_pbx.requests[-1]["cmd"] == "makeCall"
        run_queued(account_id)
        history_out(account_id, "PBX-OUT-1", "andy", now[0])
        run_queued(account_id)
    assert retail.errors == []
    cards = [(e["type"], e["callExternalId"]) for e in retail.events]
    assert len(cards) == 2 and [t for t, _ in cards] == ["out", "hangup"], cards
    placeholder = cards[0][1]
    assert placeholder.startswith("c2c-") and cards[1][1] == placeholder  # the card opened is the card closed
    assert calls.get_call(account_id, "PBX-OUT-1")["card_call_id"] == placeholder


def test_a_second_call_to_the_number_is_not_the_click(
    pbx: tuple[FakeCloudPbx, str],
    account_id: str,  # noqa: F811
    now: list[datetime],  # noqa: F811
) -> None:
    """The click is taken once: a later call of the same manager to the same number is its own."""
    from callbridge.core import clicks

    clicks.expect(account_id, "andy", NUMBER, "c2c-once")
    assert clicks.link(account_id, "PBX-A", "andy", NUMBER, now[0]) == "c2c-once"
    assert clicks.link(account_id, "PBX-A", "andy", NUMBER, now[0]) == "c2c-once"  # the same call again
    assert clicks.link(account_id, "PBX-B", "andy", NUMBER, now[0]) is None
    clicks.expect(account_id, "andy", NUMBER, "c2c-late")
    assert clicks.link(account_id, "PBX-C", "andy", NUMBER, now[0].replace(hour=now[0].hour + 1)) is None


def test_a_click_the_pbx_named_is_taken_by_that_call_only(
    account_id: str,  # noqa: F811
    now: list[datetime],  # noqa: F811
) -> None:
    """makeCall answered its uuid (the Cloud PBX): only the history of that call closes the click's
    card; another call of the manager to the number meanwhile is a call of its own."""
    from callbridge.core import clicks

    clicks.expect(account_id, "andy", NUMBER, "PBX-NAMED", named=True)
    assert clicks.link(account_id, "PBX-OTHER", "andy", NUMBER, now[0]) is None
    assert clicks.link(account_id, "PBX-NAMED", "andy", NUMBER, now[0]) == "PBX-NAMED"
