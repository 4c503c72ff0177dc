"""A credential removed by an apply stops working within CREDENTIAL_CACHE_SECONDS in a warm Lambda,
a credential switched to works at once for every request, and a refusal costs the same reads whether
the account exists or not (core/accounts.py, core/credentials.py, docs/deploy.md "Credentials:
removal and rotation"). The handlers run against DynamoDB and SSM in moto server mode; the apply
runs as the operator's CLI runs it, in another process: it does not clear this "Lambda's" caches."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import call_history
import cloudpbx
from callbridge.core import accounts
from callbridge.core.config import AccountConfig, load_account_file
from callbridge.features import admin
from callbridge.infra import aws, settings
from tests.support import form, http_event, seed_contact

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
OLD_TOKEN, NEW_TOKEN = "creds-old-token-0001", "creds-new-token-0002"
OLD_KEY, NEW_KEY = "creds-old-api-key-0001", "creds-new-api-key-0002"
# What the tests run with: the default (5 s) would only make them slower, not different.
CACHE_SECONDS = 1
# How much later than CACHE_SECONDS a removal may show: the polling step and a slow shared machine.
SLACK_SECONDS = 2.0


def demo(tokens: list[str], keys: list[str]) -> AccountConfig:
    config = load_account_file(ROOT / "accounts" / "demo.yaml")
    pbx = config.pbx.model_copy(update={"crm_tokens": [SecretStr(t) for t in tokens]})
    return config.model_copy(update={"pbx": pbx, "api_keys": [SecretStr(k) for k in keys]})


@pytest.fixture
def elsewhere(cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[AccountConfig], None]]:
    """Apply as the operator's CLI does: from another process, whose apply cannot clear the
    caches of the Lambdas that serve the account (this test's handlers)."""
    monkeypatch.setenv("CREDENTIAL_CACHE_SECONDS", str(CACHE_SECONDS))
    settings.reset_settings()
    monkeypatch.setattr(admin, "clear_account_cache", lambda: None)
    admin.apply_account(demo([OLD_TOKEN], [OLD_KEY]))
    accounts.clear_account_cache()  # a Lambda that starts after the first apply

    def apply(config: AccountConfig) -> None:
        admin.apply_account(config)

    yield apply


def webhook(token: str, account: str = "demo") -> int:
    answer = cloudpbx.handler(
        http_event(f"/v1/{account}/cloudpbx", form(**seed_contact(crm_token=token)), account=account), None
    )
    return int(answer["statusCode"])


def calls_api(key: str, account: str = "demo") -> int:
    event: dict[str, Any] = json.loads((ROOT / "events" / "CallHistoryFunction.list-without-key.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v1/{account}/calls"
    event["pathParameters"] = {"account": account}
    event["headers"] = {**event["headers"], "authorization": f"Bearer {key}"}
    return int(call_history.handler(event, None)["statusCode"])


def seconds_until_refused(probe: Callable[[], int], limit: float) -> float:
    """How long after now `probe` is first answered 401 (polled every 50 ms); inf past `limit`."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < limit:
        status = probe()
        if status == 401:
            return elapsed
        assert status == 200, status
        time.sleep(0.05)
    return float("inf")


def count_ssm_reads() -> list[str]:
    """Every GetParametersByPath the functions' SSM clients send from now on."""
    seen: list[str] = []
    for fast in (False, True):
        aws.ssm(fast=fast).meta.events.register(
            "provide-client-params.ssm.GetParametersByPath", lambda params, **_: seen.append(params["Path"])
        )
    return seen


def count_account_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The account ids core/accounts.py reads from DynamoDB from now on."""
    from callbridge.store.accounts import get_account_item as real

    reads: list[str] = []

    def counted(account_id: str, **kwargs: Any) -> Any:
        reads.append(account_id)
        return real(account_id, **kwargs)

    monkeypatch.setattr(accounts, "get_account_item", counted)
    return reads


def test_a_removed_webhook_token_is_refused_within_the_cache_time(elsewhere: Callable[[AccountConfig], None]) -> None:
    elsewhere(demo([NEW_TOKEN, OLD_TOKEN], [OLD_KEY]))  # a rotation: the PBX may send either
    assert webhook(OLD_TOKEN) == 200  # this warm Lambda knows both now
    assert webhook(NEW_TOKEN) == 200
    elsewhere(demo([NEW_TOKEN], [OLD_KEY]))  # the old token removed
    took = seconds_until_refused(lambda: webhook(OLD_TOKEN), CACHE_SECONDS + 5)
    assert took <= CACHE_SECONDS + SLACK_SECONDS, took
    assert webhook(NEW_TOKEN) == 200


def test_a_removed_api_key_is_refused_within_the_cache_time_without_an_ssm_read_per_request(
    elsewhere: Callable[[AccountConfig], None],
) -> None:
    elsewhere(demo([OLD_TOKEN], [NEW_KEY, OLD_KEY]))
    assert calls_api(OLD_KEY) == 200
    ssm_reads = count_ssm_reads()
    for _ in range(20):  # a busy integration polling the calls API, and someone trying keys
        assert calls_api(OLD_KEY) == 200
        assert calls_api("creds-guessed-key-0000") == 401
    assert ssm_reads == []  # neither a good key nor a wrong one makes the Lambda read SSM
    elsewhere(demo([OLD_TOKEN], [NEW_KEY]))  # the old key removed
    took = seconds_until_refused(lambda: calls_api(OLD_KEY), CACHE_SECONDS + 5)
    assert took <= CACHE_SECONDS + SLACK_SECONDS, took
    assert calls_api(NEW_KEY) == 200
    assert len(ssm_reads) == 1  # read again once: the apply changed the account's revision


def test_a_switch_to_a_new_token_refuses_none_of_a_burst_of_webhooks(
    cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PBX switches to the new token the moment it is applied (no overlap with the old one):
    every webhook of a burst from 16 connections at once is accepted by a Lambda that still has the
    old token cached, which reads the account once for all of them."""
    monkeypatch.setenv("CREDENTIAL_CACHE_SECONDS", "60")  # no expiry during the burst: every read is a recheck
    settings.reset_settings()
    monkeypatch.setattr(admin, "clear_account_cache", lambda: None)
    admin.apply_account(demo([OLD_TOKEN], []))
    assert webhook(OLD_TOKEN) == 200
    admin.apply_account(demo([NEW_TOKEN], []))
    reads = count_account_reads(monkeypatch)
    threads, per_thread = 16, 20
    start = threading.Barrier(threads)
    answers: list[int] = []
    lock = threading.Lock()

    def send() -> None:
        start.wait()
        mine = [webhook(NEW_TOKEN) for _ in range(per_thread)]
        with lock:
            answers.extend(mine)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    assert len(answers) == threads * per_thread
    assert answers.count(401) == 0, f"{answers.count(401)} of {len(answers)} refused"
    assert set(answers) == {200}
    assert len(reads) == 1, reads  # one recheck, shared by every request that came with the new token


def test_a_refusal_reads_the_same_whether_the_account_exists_or_not(
    elsewhere: Callable[[AccountConfig], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deterministic cause of a timing difference is the reads a refusal makes: on the calls API,
    a made-up account costs the same DynamoDB and SSM reads as a known one with a wrong key, read
    first (cold) and held (warm); the clock moves only when the test says, so that the recheck
    budget's refill cannot make the runs differ."""
    from types import SimpleNamespace

    from callbridge.infra import refresh

    now = [5000.0]
    clock = SimpleNamespace(monotonic=lambda: now[0])
    monkeypatch.setattr(accounts, "time", clock)
    monkeypatch.setattr(refresh, "time", clock)
    monkeypatch.setenv("CREDENTIAL_CACHE_SECONDS", "60")
    settings.reset_settings()
    accounts.clear_account_cache()
    calls_api("creds-guessed-key-0000")  # the demo account's secrets cached, as in a warm Lambda
    accounts.clear_account_cache()
    ssm_reads, account_reads = count_ssm_reads(), count_account_reads(monkeypatch)

    def cost(account: str) -> tuple[int, int]:
        before = (len(account_reads), len(ssm_reads))
        assert {calls_api("creds-guessed-key-0000", account) for _ in range(30)} == {401}
        return len(account_reads) - before[0], len(ssm_reads) - before[1]

    cold = [cost("nosuch"), cost("demo")]
    now[0] += 10  # the budget refilled; both still held (the account, and the id found missing)
    warm = [cost("nosuch"), cost("demo")]
    assert cold + warm == [(5, 0)] * 4  # a burst of 5 reads, then none; never SSM
