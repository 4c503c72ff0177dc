"""Bitrix24 as a local application (docs/bitrix24.md, "Local application"): the first tokens from
an authorization code, and the refresh, against the strict fake portal's OAuth server on 127.0.0.1
(real HTTP) and SSM on moto - an expired access token refreshed once and the calls filed once, two
refreshes at the same moment rotating the refresh token once, a Lambda that dies after storing the
new tokens stranding nothing, no token in any log line."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from callbridge.core.config import UserMapping
from callbridge.core.model import Call
from callbridge.crm.base import DeliveryContext, RecordResult
from callbridge.crm.bitrix24 import oauth
from callbridge.crm.bitrix24.api import Bitrix24Api
from callbridge.crm.bitrix24.connector import Bitrix24Connector
from callbridge.crm.bitrix24.settings import Bitrix24Settings
from callbridge.infra.http import RetryPolicy
from callbridge.infra.netguard import normalize_hosts
from tests.contract.conftest import T0, account_id, stack_env  # noqa: F401  (fixtures, by import)
from tests.contract.test_crm_contract import canonical
from tests.fakes.bitrix24 import CLIENT_ID, CLIENT_SECRET, MEMBER_ID, FakeBitrix24
from tests.fakes.crm_server import serve
from tests.support import host_port

pytestmark = pytest.mark.timeout(60)
ONCE = RetryPolicy(attempts=1)


class Crash(Exception):
    """The Lambda dies (its deadline, an OOM) right after the new tokens reached SSM."""


class Portal:
    def __init__(self, fake: FakeBitrix24, url: str, account: str):
        self.fake, self.url, self.account = fake, url, account

    def settings(self, **app: Any) -> Bitrix24Settings:
        settings = Bitrix24Settings.model_validate({
            "kind": "bitrix24", "name": "bitrix24",
            "app": {"portal": self.url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                    "member_id": MEMBER_ID, "oauth_url": self.url, **app},
        })  # fmt: skip
        settings._trusted_hosts = normalize_hosts([host_port(self.url)])  # what AccountConfig gives a trusted fake
        return settings

    def authorize(self) -> oauth.Tokens:
        return oauth.authorize(self.account, self.settings(), self.fake.authorize())

    def connector(self, api: Bitrix24Api | None = None) -> Bitrix24Connector:
        ctx = DeliveryContext(
            account=self.account,
            timezone="Europe/Moscow",
            users=[UserMapping.model_validate({"pbx_user": "andy", "extension": "101", "bitrix24_user_id": 7})],
            recording_url=lambda call_id: f"https://bridge.example.com/v1/{self.account}/recordings/{call_id}",
        )
        return Bitrix24Connector(self.settings(), ctx, retry=ONCE, api=api)

    def send(self, calls: list[dict[str, Any]], api: Bitrix24Api | None = None) -> list[RecordResult]:
        connector = self.connector(api)
        try:
            records = [r for c in calls for r in connector.records(Call.from_item(c), False).records]
            return connector.send(records)
        finally:
            connector.close()

    def day(self, count: int, first: int = 0) -> list[dict[str, Any]]:
        return [canonical(self.account, n, "in", "answered", 30 + n, started=T0 - timedelta(minutes=n))
                for n in range(first, first + count)]  # fmt: skip


@pytest.fixture
def portal(account_id: str) -> Iterator[Portal]:  # noqa: F811
    fake = FakeBitrix24(code="unused-webhook-code", users={7: "101"})
    oauth.clear_cache()
    try:
        with serve(fake) as url:
            fake.portal = url
            yield Portal(fake, url, account_id)
    finally:
        oauth.clear_cache()
    assert fake.errors == [], "the connector broke Bitrix24's protocol"


def kinds(results: list[RecordResult]) -> list[str]:
    return [r.kind for r in results]


def test_the_first_tokens_come_from_an_authorization_code_of_the_accounts_portal(portal: Portal) -> None:
    tokens = portal.authorize()
    assert tokens.version == 1 and tokens.member_id == MEMBER_ID
    store = oauth.TokenStore(portal.account, portal.settings())
    oauth.clear_cache()
    assert store.current().access_token == tokens.access_token  # read back from SSM
    with pytest.raises(oauth.TokenError, match="invalid_grant"):  # a code is good once
        oauth.authorize(portal.account, portal.settings(), next(iter(portal.fake.codes), "spent-code"))
    portal.fake.member_id = "0" * 32  # another portal's installation: refused, nothing stored
    with pytest.raises(ValueError, match="member_id"):
        portal.authorize()
    assert store.read() == tokens
    assert oauth.code_of("https://localhost/?code=abc123&domain=x&member_id=y") == "abc123"


def test_an_expired_access_token_is_refreshed_once_and_the_calls_filed_once(portal: Portal) -> None:
    portal.authorize()
    portal.fake.expire_access()
    assert kinds(portal.send(portal.day(2))) == ["ok", "ok"]
    assert portal.fake.grants == ["authorization_code", "refresh_token"]
    assert portal.fake.stale_calls == 1  # the first request; resent with the new token
    assert len(portal.fake.calls) == 2 and len(portal.fake.finished) == 2
    # The next delivery (a new Lambda: nothing cached) uses the stored tokens as they are.
    oauth.clear_cache()
    assert kinds(portal.send(portal.day(1, first=2))) == ["ok"]
    assert portal.fake.grants == ["authorization_code", "refresh_token"] and portal.fake.refused_grants == []
    assert oauth.TokenStore(portal.account, portal.settings()).current().version == 2


def test_a_token_near_its_end_is_refreshed_before_use(portal: Portal) -> None:
    portal.fake.access_lifetime = oauth.REFRESH_MARGIN_S / 2
    portal.authorize()
    portal.fake.access_lifetime = 3600
    assert kinds(portal.send(portal.day(1))) == ["ok"]
    assert portal.fake.grants == ["authorization_code", "refresh_token"] and portal.fake.stale_calls == 0


def test_two_lambdas_refreshing_at_once_rotate_the_refresh_token_once(portal: Portal) -> None:
    stale = portal.authorize().access_token
    portal.fake.expire_access()
    portal.fake.oauth_delay = 0.5  # the first refresh is in flight while the second one starts
    got: list[str] = []
    failed: list[BaseException] = []
    start = threading.Barrier(2)

    def one_lambda() -> None:
        try:
            start.wait()
            got.append(oauth.TokenStore(portal.account, portal.settings()).refresh(stale).access_token)
        except BaseException as exc:  # reported by the test thread
            failed.append(exc)

    threads = [threading.Thread(target=one_lambda) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert failed == [] and len(got) == 2
    assert portal.fake.grants.count("refresh_token") == 1 and portal.fake.refused_grants == []
    assert got[0] == got[1] and got[0] in portal.fake.access_tokens  # both use the one new token


def test_two_deliveries_on_an_expired_token_at_once_refresh_once_and_file_each_call_once(portal: Portal) -> None:
    portal.authorize()
    portal.fake.expire_access()
    portal.fake.oauth_delay = 0.3
    batches = [portal.day(2), portal.day(2, first=2)]
    results: list[list[str]] = []
    start = threading.Barrier(2)

    def one_lambda(calls: list[dict[str, Any]]) -> None:
        start.wait()
        results.append(kinds(portal.send(calls)))

    threads = [threading.Thread(target=one_lambda, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [["ok", "ok"], ["ok", "ok"]]
    assert portal.fake.grants.count("refresh_token") == 1 and portal.fake.refused_grants == []
    assert len(portal.fake.finished) == 4 and len(portal.fake.calls) == 4


def test_a_lambda_that_dies_after_storing_the_new_tokens_strands_nothing(portal: Portal) -> None:
    portal.authorize()
    portal.fake.expire_access()

    def crash(_: oauth.Tokens) -> None:
        raise Crash()

    store = oauth.TokenStore(portal.account, portal.settings(), after_store=crash)
    api = Bitrix24Api(
        f"{portal.url}/rest", auth=store, retry=ONCE, trusted_hosts=normalize_hosts([host_port(portal.url)])
    )
    calls = portal.day(1)
    with pytest.raises(Crash):
        portal.send(calls, api=api)
    assert portal.fake.calls == {}  # died before the new token was used
    oauth.clear_cache()  # the next attempt runs in another Lambda
    assert kinds(portal.send(calls)) == ["ok"]
    assert portal.fake.grants == ["authorization_code", "refresh_token"]  # no second refresh
    assert portal.fake.refused_grants == [] and len(portal.fake.finished) == 1
    assert not _claim_left(portal)


def test_a_spent_refresh_token_waits_for_the_operator_and_says_so(portal: Portal) -> None:
    tokens = portal.authorize()
    store = oauth.TokenStore(portal.account, portal.settings())
    store.refresh(tokens.access_token)
    store.store(tokens)  # as if the write of the rotated pair had been lost: the stored token is spent
    portal.fake.expire_access()
    oauth.clear_cache()
    results = portal.send(portal.day(1))
    assert kinds(results) == ["transient"] and "callbridge bitrix24 authorize" in results[0].reason
    assert portal.fake.refused_grants == ["refresh_token: invalid_grant"] and portal.fake.calls == {}
    portal.authorize()  # the operator authorizes again: the delivery goes
    assert kinds(portal.send(portal.day(1))) == ["ok"]


def test_no_token_or_client_secret_reaches_a_log_line(
    portal: Portal, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)  # as Lambda runs (botocore's DEBUG prints every request body: never on)
    caplog.set_level(logging.DEBUG, logger="httpx")
    portal.authorize()
    portal.fake.expire_access()
    assert kinds(portal.send(portal.day(2))) == ["ok", "ok"]
    portal.fake.expire_access()
    portal.fake.spent.update(portal.fake.refresh_tokens)  # the next refresh is refused
    portal.fake.refresh_tokens.clear()
    oauth.clear_cache()
    assert kinds(portal.send(portal.day(1, first=2))) == ["transient"]
    captured = capfd.readouterr()
    logged = "\n".join([caplog.text, captured.out, captured.err])
    assert "oauth/token" in logged and "Bitrix24 tokens refreshed" in logged  # the lines are there...
    for secret in [*portal.fake.seen_tokens, CLIENT_SECRET]:
        assert secret not in logged  # ...without a token or the client secret


def _claim_left(portal: Portal) -> bool:
    from callbridge.infra import aws

    ssm = aws.ssm()
    try:
        ssm.get_parameter(Name=oauth.claim_name(portal.account, "bitrix24"))
    except ssm.exceptions.ParameterNotFound:
        return False
    return True
