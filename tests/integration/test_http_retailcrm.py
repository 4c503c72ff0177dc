"""callbridge.infra.http (retries, Retry-After, permanent 4xx, no secret in errors, rate limit) and the
retailCRM client against a fake retailCRM on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from callbridge.crm.retailcrm.api import RetailCrmApi, RetailCrmError
from callbridge.infra.http import HttpPeer, PermanentHttpError, RateLimiter, RetryPolicy, TransientHttpError
from tests.fakes.crm_server import serve
from tests.fakes.retailcrm import FakeRetailCrm
from tests.support import host_port

KEY = "rcrm-secret-key-123"
FAST = RetryPolicy(attempts=3, backoff_initial_s=0.0, backoff_max_s=0.0, jitter_s=0.0)


class Scripted:
    """Answers from a script of (status, body, headers); the last entry repeats."""

    def __init__(self, script: list[tuple[int, Any, dict[str, str]]]):
        self.script = script
        self.seen: list[tuple[str, str, dict[str, str]]] = []

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        self.seen.append((method, path, query))
        status, answer, extra = self.script[min(len(self.seen) - 1, len(self.script) - 1)]
        return status, answer, dict(extra)


@pytest.fixture
def fake() -> Iterator[tuple[FakeRetailCrm, str]]:
    crm = FakeRetailCrm(api_key=KEY)
    with serve(crm) as url:
        yield crm, url


def _peer(url: str, sleeps: list[float], **kw: Any) -> HttpPeer:
    kw.setdefault("trusted_hosts", [host_port(url)])  # the fake on loopback, trusted as a test account does
    return HttpPeer("peer", url, retry=kw.pop("retry", FAST), sleep=sleeps.append, **kw)


def test_5xx_and_429_are_retried_then_succeed() -> None:
    script = Scripted([(503, {}, {}), (429, {}, {"Retry-After": "2"}), (200, {"ok": True}, {})])
    sleeps: list[float] = []
    with serve(script) as url, _peer(url, sleeps) as peer:
        assert peer.request("GET", "/x").json() == {"ok": True}
    assert len(script.seen) == 3
    assert sleeps[1] == 2.0  # Retry-After honoured


def test_exhausted_retries_raise_transient_with_status() -> None:
    script = Scripted([(500, {}, {})])
    with serve(script) as url, _peer(url, []) as peer, pytest.raises(TransientHttpError) as info:
        peer.request("GET", "/x")
    assert info.value.status == 500 and len(script.seen) == 3


def test_long_retry_after_is_not_waited_in_process() -> None:
    script = Scripted([(429, {}, {"Retry-After": "600"})])
    sleeps: list[float] = []
    with serve(script) as url, _peer(url, sleeps) as peer, pytest.raises(TransientHttpError) as info:
        peer.request("GET", "/x")
    assert info.value.retry_after == 600 and sleeps == [] and len(script.seen) == 1


def test_other_4xx_is_permanent_and_not_retried() -> None:
    script = Scripted([(400, {"errorMsg": "bad"}, {})])
    with serve(script) as url, _peer(url, []) as peer, pytest.raises(PermanentHttpError) as info:
        peer.request("GET", "/x")
    assert info.value.status == 400 and len(script.seen) == 1 and "bad" in info.value.body


def test_connection_error_is_transient_and_names_no_secret() -> None:
    sleeps: list[float] = []
    with serve(Scripted([(200, {}, {})])) as url:
        pass  # the port is closed now
    with _peer(url, sleeps) as peer, pytest.raises(TransientHttpError) as info:
        peer.request("GET", "/x", params={"apiKey": KEY})
    assert KEY not in str(info.value) and info.value.__cause__ is None and len(sleeps) == 2


def test_timeout_is_transient() -> None:
    import time

    class Slow(Scripted):
        def handle(self, *args: Any) -> tuple[int, Any, dict[str, str]]:
            time.sleep(0.5)
            return super().handle(*args)

    with (
        serve(Slow([(200, {}, {})])) as url,
        _peer(url, [], timeout_s=0.1) as peer,
        pytest.raises(TransientHttpError, match="timeout"),
    ):
        peer.request("GET", "/x")


def test_rate_limiter_spaces_requests() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    bucket = RateLimiter(rate=10, burst=2, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(6):
        bucket.acquire()
    assert waits[:1] == [pytest.approx(0.1)] and sum(waits) == pytest.approx(0.4)


def test_upload_calls_sends_form_json_with_api_key(fake: tuple[FakeRetailCrm, str]) -> None:
    crm, url = fake
    call = {"date": "2024-05-01 12:00:00", "type": "in", "phone": "+79001234567", "result": "answered",
            "duration": 10, "externalId": "c1", "code": "101", "userId": 5}  # fmt: skip
    api = RetailCrmApi(url, KEY, retry=FAST, trusted_hosts=[host_port(url)])
    assert api.upload_calls([call]).processed == 1
    again = api.upload_calls([call])
    assert again.duplicates == ["c1"] and crm.errors == []
    with pytest.raises(ValueError):
        api.upload_calls([call] * 51)


def test_rejected_call_raises_with_per_field_errors(fake: tuple[FakeRetailCrm, str]) -> None:
    crm, url = fake
    crm.reject_phones.add("+70000000000")
    call = {"date": "2024-05-01 12:00:00", "type": "in", "phone": "+70000000000", "result": "answered",
            "duration": 10, "externalId": "c1"}  # fmt: skip
    with pytest.raises(RetailCrmError) as info:
        RetailCrmApi(url, KEY, retry=FAST, trusted_hosts=[host_port(url)]).upload_calls([call])
    assert info.value.status == 400 and "calls[0][phone]" in info.value.errors


def test_wrong_key_is_permanent_and_key_not_in_message(fake: tuple[FakeRetailCrm, str]) -> None:
    _, url = fake
    with pytest.raises(RetailCrmError) as info:
        RetailCrmApi(url, "wrong-key-value", retry=FAST, trusted_hosts=[host_port(url)]).call_event(
            {"phone": "+79001234567", "type": "in"}
        )
    assert info.value.status == 403 and "wrong-key-value" not in str(info.value)


def test_event_manager_and_module(fake: tuple[FakeRetailCrm, str]) -> None:
    crm, url = fake
    api = RetailCrmApi(url, KEY, retry=FAST, trusted_hosts=[host_port(url)])
    api.call_event({"phone": "+79001234567", "type": "in", "codes": ["101"]})
    assert crm.events == [{"phone": "+79001234567", "type": "in", "codes": ["101"]}]
    crm.managers["+79001234567"] = {"id": 7, "code": "101"}
    assert api.manager("+79001234567") == {"id": 7, "code": "101"}
    assert api.manager("+79990000000") is None
    module = {
        "code": "callbridge", "active": True, "name": "Telephony name", "logo": "http://api.telephony-test.com/logo.svg",
        "accountUrl": "http://api.telephony-test.com/settings",
        "integrations": {"telephony": {"clientId": "2dbh26tahjj26sg", "makeCallUrl": "https://x.example/make-call"}},
    }  # fmt: skip
    assert api.edit_module(module) == {"success": True}
    assert api.get_module("callbridge") == json.loads(json.dumps(module))
    assert crm.errors == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"logo": None}, "logo None is not the http(s) URL of an SVG"),
        ({"logo": "https://x.example/logo.gif"}, "is not the http(s) URL of an SVG"),
        ({"accountUrl": "https://x.example"}, "is not the http(s) URL of a page"),
        ({"baseUrl": "https://x.example/api", "accountUrl": "https://x.example/api/"}, "is the API root"),
    ],
)
def test_the_fake_refuses_a_module_without_its_logo_or_page(
    fake: tuple[FakeRetailCrm, str], change: dict[str, Any], problem: str
) -> None:
    crm, url = fake
    module = {
        "code": "callbridge", "active": True, "name": "CallBridge", "logo": "https://x.example/logo.svg",
        "accountUrl": "https://x.example/about", "integrations": {"telephony": {"clientId": "client-id-0001"}},
    }  # fmt: skip
    module = {k: v for k, v in {**module, **change}.items() if v is not None}
    with pytest.raises(RetailCrmError):
        RetailCrmApi(url, KEY, retry=FAST).edit_module(module)
    assert len(crm.errors) == 1 and problem in crm.errors[0]


# ---------------------------------------------------------------------------------------------
# The address guard: a CRM or PBX key goes only where the account said
# ---------------------------------------------------------------------------------------------
def test_a_peer_on_an_untrusted_private_address_receives_nothing() -> None:
    """Without the account's trust (or trusting another port of the host), a peer on loopback gets no
    request at all, and the refusal is permanent: retrying would send nothing either."""
    script = Scripted([(200, {"ok": True}, {})])
    with serve(script) as url:
        port = int(url.rsplit(":", 1)[1])
        for trusted in ([], [f"127.0.0.1:{port + 1}"], ["127.0.0.1"]):
            with (
                _peer(url, [], trusted_hosts=trusted, secrets=(KEY,)) as peer,
                pytest.raises(PermanentHttpError) as info,
            ):
                peer.request("POST", "/api/v5/telephony/call/event", data={"apiKey": KEY})
            assert "address refused" in str(info.value) and KEY not in str(info.value)
            assert peer.requests_sent == 1  # one attempt, not retried
        assert script.seen == []
        with _peer(url, []) as peer:  # trusted: the same request goes through
            assert peer.request("POST", "/api/v5/telephony/call/event").json() == {"ok": True}
        assert len(script.seen) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://169.254.169.254",
        "https://10.0.0.1:8443",
        "https://[::1]:8443",
        "https://[::ffff:127.0.0.1]:443",
        "https://user:pass@crm.example.com",
        "https://crm.example.com:22",
    ],
)
def test_private_or_odd_peer_addresses_are_refused_before_any_io(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network used for {url}")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with HttpPeer("peer", url, retry=FAST) as peer, pytest.raises(PermanentHttpError, match="address refused"):
        peer.request("GET", "/x")


def test_a_proxy_from_the_environment_cannot_carry_a_request_past_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx would send a request through HTTP(S)_PROXY, to whatever address: the peer ignores it."""
    proxy = Scripted([(200, {"proxied": True}, {})])
    target = Scripted([(200, {"direct": True}, {})])
    with serve(proxy) as proxy_url, serve(target) as url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("ALL_PROXY", proxy_url)
        with _peer(url, []) as peer:
            assert peer.request("GET", "/x").json() == {"direct": True}
    assert proxy.seen == []
