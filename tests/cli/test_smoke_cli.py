"""`callbridge smoke` (docs/deploy.md, "Smoke check") run as a subprocess, as an operator runs it,
against the local runtime of `make run` with an account that has a retailCRM (a strict fake on
127.0.0.1): it passes and reaches no CRM by default, delivers with --deliver, and a wrong key or API
key fails naming the check."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cli.conftest import ROOT, Cli
from tests.fakes import crm_server
from tests.fakes.retailcrm import FakeRetailCrm
from tests.support import trusting_fakes_yaml

pytestmark = pytest.mark.timeout(300)

CRM_TOKEN = "cli-smoke-crm-token-0001"
API_KEY = "cli-smoke-calls-api-key-0001"
RETAIL_KEY = "cli-smoke-retailcrm-key-01"
ACCOUNT = """\
account: cli-smoke
phone_region: RU
pbx:
  kind: cloudpbx
  crm_tokens: [{token}]
api_keys: [{api_key}]
users:
  - {{pbx_user: andy, extension: "101", retailcrm_user_id: 1, retailcrm_code: "101"}}
crms:
  - {{kind: retailcrm, base_url: "{retail}", api_key: {retail_key}, mode: realtime,
      client_id: cli-smoke-client-0001, default_user_id: 1}}
"""
CHECKS = [
    "health",
    "auth",
    "contact",
    "event INCOMING",
    "event ACCEPTED",
    "event COMPLETED",
    "history",
    "stored call",
    "deliveries",
]
SECRETS = (CRM_TOKEN, API_KEY, RETAIL_KEY)


@pytest.fixture(scope="module")
def retail() -> Iterator[tuple[FakeRetailCrm, str]]:
    fake = FakeRetailCrm(api_key=RETAIL_KEY)
    with crm_server.serve(fake) as url:
        yield fake, url


@pytest.fixture(scope="module")
def account(bridge: Any, retail: tuple[FakeRetailCrm, str], tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("smoke") / "cli-smoke.yaml"
    text = ACCOUNT.format(token=CRM_TOKEN, api_key=API_KEY, retail=retail[1], retail_key=RETAIL_KEY)
    path.write_text(trusting_fakes_yaml(text), encoding="utf-8")
    applied = Cli(bridge)("accounts", "apply", str(path))
    assert applied.exit_code == 0, applied.output
    return "cli-smoke"


def smoke(
    bridge: Any, *args: str, crm_token: str = CRM_TOKEN, api_key: str = API_KEY
) -> subprocess.CompletedProcess[str]:
    """`python -m callbridge_cli smoke --url <runtime> ...`, the keys in the environment as the docs advise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CALLBRIDGE_", "AWS_"))}
    env.update(CALLBRIDGE_CRM_TOKEN=crm_token, CALLBRIDGE_API_KEY=api_key)
    env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in ("layers/common/python", "tools"))
    return subprocess.run(
        [sys.executable, "-m", "callbridge_cli", "smoke", "--url", bridge.base_url, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def call_id(output: str) -> str:
    found = re.search(r"^smoke call (callbridge-smoke-\d{8}T\d{6}Z-[0-9a-f]{8}) ", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def read_call(bridge: Any, account: str, call: str) -> dict[str, Any]:
    response = httpx.get(
        f"{bridge.base_url}/v1/{account}/calls/{call}", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


def settled(bridge: Any, account: str, call: str, timeout: float = 30.0) -> dict[str, str]:
    """The call's delivery states once none is pending (the realtime worker has run)."""
    deadline = time.monotonic() + timeout
    while True:
        states = {d["crm"]: d["state"] for d in read_call(bridge, account, call)["deliveries"]}
        if (states and "pending" not in states.values()) or time.monotonic() >= deadline:
            return states
        time.sleep(0.3)


def test_smoke_passes_and_its_call_reaches_no_crm(bridge: Any, account: str, retail: tuple[FakeRetailCrm, str]):
    fake = retail[0]
    result = smoke(bridge, "--account", account)

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for name in CHECKS:
        assert any(line.startswith(f"ok    {name}: ") for line in lines), f"no passed {name!r} line:\n{result.stdout}"
    assert "FAIL" not in result.stdout
    assert lines[-1] == "smoke check passed"
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr

    call = call_id(result.stdout)
    stored = read_call(bridge, account, call)["call"]
    assert (stored["phone"], stored["department"], stored["outcome"]) == (
        "anonymous",
        "CallBridge smoke test",
        "answered",
    )
    # The withheld caller id is the point: retailCRM settles it not_applicable and gets nothing.
    assert settled(bridge, account, call) == {"retailcrm": "not_applicable"}
    assert fake.uploads == [] and fake.events == [] and fake.errors == []
    assert call not in fake.received


def test_runs_do_not_collide(bridge: Any, account: str):
    first, second = smoke(bridge, "--account", account), smoke(bridge, "--account", account)

    assert (first.returncode, second.returncode) == (0, 0), first.stdout + second.stdout
    assert call_id(first.stdout) != call_id(second.stdout)


def test_deliver_sends_the_call_to_the_crm(bridge: Any, account: str, retail: tuple[FakeRetailCrm, str]):
    fake = retail[0]
    result = smoke(bridge, "--account", account, "--deliver", "--phone", "79101234567", "--timeout", "60")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok    deliveries: retailcrm delivered" in result.stdout
    call = call_id(result.stdout)
    assert fake.received.get(call) == 1
    sent = fake.calls[call]
    assert (sent["phone"], sent["type"], sent["result"], int(sent["duration"])) == ("+79101234567", "in", "answered", 7)


def test_a_wrong_crm_token_fails_at_contact(bridge: Any, account: str):
    result = smoke(bridge, "--account", account, crm_token="cli-smoke-not-the-token-01")

    assert result.returncode == 1, result.stdout + result.stderr
    assert 'FAIL  contact: 401 {"error": "Invalid token"}' in result.stdout
    assert result.stdout.splitlines()[-1] == "smoke check FAILED at contact"
    assert "ok    history" not in result.stdout  # it stopped at the failed check
    assert "cli-smoke-not-the-token-01" not in result.stdout + result.stderr


def test_a_wrong_api_key_fails_at_the_stored_call(bridge: Any, account: str):
    result = smoke(bridge, "--account", account, api_key="cli-smoke-not-the-api-key-1")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "ok    history: 200" in result.stdout
    assert "FAIL  stored call: the calls API answered 401" in result.stdout
    assert "cli-smoke-not-the-api-key-1" not in result.stdout + result.stderr


def test_an_unknown_account_fails_at_contact(bridge: Any, account: str):
    result = smoke(bridge, "--account", "no-such-account")

    assert result.returncode == 1, result.stdout
    assert "FAIL  contact: 401" in result.stdout


def test_nothing_answering_fails_at_health(account: str):
    class Nowhere:
        base_url = "http://127.0.0.1:9"  # the discard port: nothing listens there

    result = smoke(Nowhere(), "--account", account)

    assert result.returncode == 1, result.stdout
    assert "FAIL  health: no answer from http://127.0.0.1:9" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--deliver"], "--deliver needs --phone"),
        (["--phone", "79101234567"], "--phone is for --deliver only"),
        ([], "Missing option '--account'"),
    ],
)
def test_usage_errors_exit_2(bridge: Any, args: list[str], message: str):
    result = smoke(bridge, *(args if not args else ["--account", "cli-smoke", *args]))

    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
