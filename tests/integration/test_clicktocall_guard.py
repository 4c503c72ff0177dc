"""Click-to-call through the Lambda handler (moto) to a fake Cloud PBX on 127.0.0.1: the PBX token
is posted only to an address the account trusts (docs/accounts.md, "Outbound addresses")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import make_call
from callbridge.core import accounts
from callbridge.core.config import AccountConfig
from callbridge.features.admin import apply_account
from callbridge.infra import secrets
from tests.fakes.cloudpbx_api import PATH, FakeCloudPbx
from tests.fakes.crm_server import serve
from tests.integration.recording_server import FakeNet, guarded_network
from tests.support import host_port, http_event

pytestmark = pytest.mark.timeout(60)
PBX_TOKEN = "guard-pbx-token-00001"
API_KEY = "guard-api-key-000000001"


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNet]:
    yield from guarded_network(monkeypatch)


@pytest.fixture
def pbx(net: FakeNet) -> Iterator[tuple[FakeCloudPbx, str]]:
    fake = FakeCloudPbx(token=PBX_TOKEN)
    with serve(fake) as url:
        yield fake, url


def apply(api_url: str, trusted_hosts: list[str]) -> None:
    apply_account(
        AccountConfig.model_validate(
            {
                "account": "guarded",
                "phone_region": "RU",
                "pbx": {
                    "kind": "cloudpbx",
                    "api_url": api_url,
                    "token": PBX_TOKEN,
                    "crm_tokens": ["guard-crm-token-0001"],
                },
                "api_keys": [API_KEY],
                "users": [{"pbx_user": "andy", "extension": "100"}],
                "trusted_hosts": trusted_hosts,
            }
        )
    )
    accounts.clear_account_cache()
    secrets.reset_secret_cache()


def click() -> tuple[int, Any]:
    event = http_event("/v1/guarded/calls", json.dumps({"user": "andy", "phone": "+79101234567"}), account="guarded")
    event["headers"].update({"content-type": "application/json", "authorization": f"Bearer {API_KEY}"})
    answer = make_call.handler(event, None)
    return int(answer["statusCode"]), json.loads(answer["body"])


def test_a_pbx_name_resolving_to_a_private_address_gets_no_request_and_no_token(
    cloud: dict[str, str], pbx: tuple[FakeCloudPbx, str], net: FakeNet
) -> None:
    """A PBX address that passes the apply-time check (a name, https) but resolves to loopback: the
    fake listening there receives nothing, the answer says why, and the token is not in it."""
    fake, url = pbx
    port = url.rsplit(":", 1)[1]
    net.add("pbx.test", "127.0.0.1")
    apply(f"https://pbx.test:{port}{PATH}", [])
    status, body = click()
    assert status == 502, body
    assert "address is not allowed" in body["error"] and "loopback" in body["error"]
    assert PBX_TOKEN not in json.dumps(body)
    assert fake.requests == []
    assert all(str(p) != port for _, p in net.connects), net.connects

    # Trusting another port of the same host changes nothing.
    apply(f"https://pbx.test:{port}{PATH}", [f"pbx.test:{int(port) + 1}"])
    assert click()[0] == 502
    assert fake.requests == []


def test_a_trusted_host_port_is_called(cloud: dict[str, str], pbx: tuple[FakeCloudPbx, str]) -> None:
    fake, url = pbx
    apply(f"{url}{PATH}", [host_port(url)])
    status, body = click()
    assert status == 200, body
    assert [(r["cmd"], r["user"], r["phone"], r["token"]) for r in fake.requests] == [
        ("makeCall", "andy", "79101234567", PBX_TOKEN)
    ]


def test_an_ssm_hiccup_on_the_click_to_call_path_is_retried_not_a_503(
    cloud: dict[str, str], pbx: tuple[FakeCloudPbx, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSM throttles the first two reads of the account's secrets (the fuzz run met a slow one): the
    click-to-call path, which has time, retries instead of answering 503. Only the contact path reads
    them with one attempt (infra/secrets.py)."""
    from moto.core.exceptions import JsonRESTError
    from moto.ssm.models import SimpleSystemManagerBackend

    fake, url = pbx
    apply(f"{url}{PATH}", [host_port(url)])
    throttled: list[str] = []
    original = SimpleSystemManagerBackend.get_parameters_by_path

    def throttling(self: Any, path: str, *args: Any, **kwargs: Any) -> Any:
        if len(throttled) < 2:
            throttled.append(path)
            raise JsonRESTError("ThrottlingException", "Rate exceeded")
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(SimpleSystemManagerBackend, "get_parameters_by_path", throttling)
    secrets.reset_secret_cache()  # a cold container: the key check reads SSM
    status, body = click()
    assert len(throttled) == 2 and all(p.endswith("/accounts/guarded") for p in throttled)
    assert status == 200, body
    assert [r["cmd"] for r in fake.requests] == ["makeCall"]
