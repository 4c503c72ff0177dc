"""``python -m callbridge_local`` as the README runs it: a subprocess on free ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from callbridge_local.runtime import parse_args
from callbridge_local.testing import TOOLS_DIR, BridgeStartupError, running_bridge

from .conftest import ROOT, TEMPLATE, write_project


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_runtime_serves_health_and_stops_cleanly(stop_signal):
    with running_bridge(None) as bridge:
        response = httpx.get(bridge.url("/health"), timeout=10)
        assert response.status_code == 200, bridge.output()
        assert response.json() == {"status": "ok"}
        assert bridge.env["AWS_ENDPOINT_URL"] == bridge.aws_endpoint
        assert bridge.env["CALLS_TABLE"] == "callbridge-local-CallsTable"
        tables = bridge.client("dynamodb").list_tables()["TableNames"]
        assert "callbridge-local-CallsTable" in tables

        started = time.monotonic()
        code = bridge.stop(stop_signal, timeout=10)
        assert code == 0, bridge.output()
        assert time.monotonic() - started < 10
        output = bridge.output()
    assert "Traceback" not in output, output
    assert "CallBridge local is ready on http://127.0.0.1:" in output


FUNCTION = (
    "Fn: {Type: AWS::Serverless::Function, Properties: {CodeUri: src/, Runtime: python3.12, Handler: m.h, "
    "Environment: {Variables: {V: %s}}}}"
)


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        (
            "Fn: {Type: AWS::Serverless::Function, Properties: {CodeUri: src/, Runtime: python3.12, Handler: nodot}}",
            "Handler must look like module.function",
        ),
        # What the SAM transform refuses, the runtime says in the translator's words.
        (
            "Fn: {Type: AWS::Serverless::Function, Properties: {CodeUri: src/}}",
            "the SAM transform refused the template: Resource with id [Fn] is invalid",
        ),
        # What the runtime does not emulate is refused by name, before or while provisioning.
        (
            "Setting: {Type: AWS::SSM::Parameter, Properties: {Type: String, Value: x}}",
            "resource Setting: type AWS::SSM::Parameter is not supported by the local runtime",
        ),
        (FUNCTION % "!Split [-, a-b]", "Fn: environment variable V: Fn::Split is not supported by the local runtime"),
    ],
    ids=["no-handler", "sam-transform", "resource-type", "intrinsic"],
)
def test_a_template_it_cannot_run_fails_fast_with_a_one_line_reason(tmp_path, resources, reason):
    (tmp_path / "template.yaml").write_text(f"Resources:\n  {resources}\n")
    with (
        pytest.raises(BridgeStartupError, match="exited with code 1") as failure,
        running_bridge(None, template=tmp_path / "template.yaml", startup_timeout=30),
    ):
        pass
    assert reason in str(failure.value)
    assert "Traceback" not in str(failure.value)


def test_command_line_defaults_and_overrides(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("CALLBRIDGE_PORT", "4000")
    monkeypatch.delenv("CALLBRIDGE_AWS_PORT", raising=False)
    monkeypatch.delenv("CALLBRIDGE_ACCOUNTS_DIR", raising=False)
    config = parse_args([])
    assert (config.host, config.port, config.aws_port, config.template_path) == ("127.0.0.1", 4000, 0, TEMPLATE)
    assert config.accounts_dir == ROOT / "accounts"
    assert config.schedules is True

    config = parse_args(
        ["--port", "0", "--accounts", "", "--param", "LogLevel=DEBUG", "--param", "A=b=c", "--no-schedules"]
    )
    assert (config.port, config.accounts_dir, config.params, config.schedules) == (
        0,
        None,
        {"LogLevel": "DEBUG", "A": "b=c"},
        False,
    )
    monkeypatch.setenv("CALLBRIDGE_ACCOUNTS_DIR", str(tmp_path))
    assert parse_args([]).accounts_dir == tmp_path
    with pytest.raises(SystemExit):
        parse_args(["--param", "novalue"])


def test_a_bad_account_file_ends_the_start_quickly_naming_the_file_and_the_field(tmp_path):
    accounts = tmp_path / "accounts"
    accounts.mkdir()
    demo = (ROOT / "accounts" / "demo.yaml").read_text(encoding="utf-8")
    (accounts / "demo.yaml").write_text(demo.replace("  crm_tokens:\n    - demo-crm-token-0001\n", ""))
    (accounts / "typo.yaml").write_text(demo.replace("account: demo", "account: typo").replace("timezone:", "timezon:"))
    assert "crm_tokens" not in (accounts / "demo.yaml").read_text()
    command = [sys.executable, "-m", "callbridge_local", "--port", "0", "--no-schedules", "--accounts", "accounts"]
    command += ["--template", str(TEMPLATE)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TOOLS_DIR), env.get("PYTHONPATH", "")) if p)
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = process.communicate(timeout=45)
    finally:
        # Before the fix the runtime never exited, even on SIGTERM.
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 1, output
    assert "accounts/demo.yaml: pbx.crm_tokens: Field required" in output
    assert "accounts/typo.yaml: timezon: Extra inputs are not permitted" in output
    assert "Traceback" not in output, output
    assert "ready on" not in output


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` here (/proc/net/tcp: hex, LISTEN = 0A)."""
    found = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        if not table.exists():
            continue
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from /proc/net/tcp")
def test_the_emulated_aws_stays_on_loopback_when_the_gateway_listens_everywhere():
    # Bound on every interface, but spoken to only through loopback.
    with running_bridge(None, host="0.0.0.0") as bridge:
        aws_port = urlsplit(bridge.aws_endpoint).port or 0
        assert _listening_addresses(aws_port) == {"0100007F"}, "moto must listen on 127.0.0.1 only"
        assert urlsplit(bridge.aws_endpoint).hostname == "127.0.0.1"
        refused = httpx.get(bridge.url("/_local/env"), headers={"Host": "evil.example"}, timeout=10)
        assert refused.status_code == 403
        assert "loopback" in refused.json()["message"]
        # The gateway does listen everywhere, and prints a loopback URL, not 0.0.0.0.
        assert _listening_addresses(urlsplit(bridge.base_url).port or 0) == {"00000000"}
        assert urlsplit(bridge.base_url).hostname == "127.0.0.1"
        assert httpx.get(bridge.url("/_local/env"), timeout=10).status_code == 200


LOGGING_TEMPLATE = """
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  PingFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: src/
      Runtime: python3.12
      Handler: {module}.ping
      Environment: {Variables: {POWERTOOLS_SERVICE_NAME: callbridge}}
      Events: {E: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /ping, Method: GET}}}
"""

# As the product's handlers do (callbridge.infra.observability): a Powertools Logger named callbridge.
LOGGING_HANDLER = """
from aws_lambda_powertools import Logger

logger = Logger(service="callbridge")


def ping(event, context):
    logger.info("pinged")
    return {"pong": True}
"""


def test_the_request_log_keeps_going_after_a_handler_creates_a_powertools_logger(tmp_path):
    project = write_project(tmp_path, LOGGING_TEMPLATE, LOGGING_HANDLER)
    with running_bridge(None, template=project.template) as bridge, httpx.Client(timeout=10) as client:
        for _ in range(50):
            assert client.get(bridge.url("/ping")).status_code == 200
        bridge.wait_for_output("GET /ping", timeout=10)
        deadline = time.monotonic() + 10
        while len(bridge.wait_for_output("GET /ping -> PingFunction 200")) < 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        lines = bridge.wait_for_output("GET /ping -> PingFunction 200")
        assert len(lines) == 50, bridge.output()
        # The handler's own lines still come once each, as Powertools' JSON.
        assert len(bridge.wait_for_output('"pinged"')) == 50
        assert not [line for line in bridge.output().splitlines() if "callbridge: pinged" in line]
