"""``python -m callbridge_local`` as the README runs it: a subprocess on free ports."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
import pytest

from callbridge_local.runtime import parse_args
from callbridge_local.testing import BridgeStartupError, running_bridge

from .conftest import ROOT, TEMPLATE


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


FUNCTION = "Fn: {Type: AWS::Serverless::Function, Properties: {Handler: m.h, Environment: {Variables: {V: %s}}}}"


@pytest.mark.parametrize(
    ("resources", "reason"),
    [
        ("Fn: {Type: AWS::Serverless::Function, Properties: {}}", "Handler must look like module.function"),
        # What the runtime does not emulate is refused by name, before or while provisioning.
        (
            "Setting: {Type: AWS::SSM::Parameter, Properties: {Type: String, Value: x}}",
            "resource Setting: type AWS::SSM::Parameter is not supported by the local runtime",
        ),
        (FUNCTION % "!Split [-, a-b]", "Fn: environment variable V: Fn::Split is not supported by the local runtime"),
    ],
    ids=["no-handler", "resource-type", "intrinsic"],
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
