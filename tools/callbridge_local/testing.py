"""Helpers for tests: an emulated AWS, a provisioned template, and the whole runtime as a subprocess.

Everything started here is stopped when its context manager exits, whatever happened inside.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callbridge_local import DEFAULT_REGION, DEFAULT_STACK_NAME
from callbridge_local.emulator import LOCALHOST, MotoServer, aws_env
from callbridge_local.provision import AwsTarget, provision
from callbridge_local.runtime import AWS_ENDPOINT_MESSAGE, DEFAULT_TEMPLATE, READY_MESSAGE
from callbridge_local.template import load_template

TOOLS_DIR = Path(__file__).resolve().parent.parent
_READY = re.compile(re.escape(READY_MESSAGE) + r" (http://\S+)")
_AWS_ENDPOINT = re.compile(re.escape(AWS_ENDPOINT_MESSAGE) + r" (http://\S+)")
# moto keeps every AWS account's state apart; a moto server in this process takes the account of
# every request from this variable when it is set (tests give each test an account of its own).
MOTO_ACCOUNT_ID = "MOTO_ACCOUNT_ID"


class BridgeStartupError(RuntimeError):
    """The runtime subprocess exited or did not get ready in time; the message has its output."""


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free 127.0.0.1 port; yields its endpoint URL."""
    server = MotoServer(LOCALHOST, 0)
    try:
        yield server.start()
    finally:
        server.stop()


def provisioned(
    endpoint: str,
    template_path: Path | str,
    params: Mapping[str, str] | None = None,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
) -> dict[str, str]:
    """Create the template's resources in the moto server at ``endpoint``; returns the functions'
    merged environment (table names, queue URLs, ...). Safe to call again on the same server."""
    stack = provision(load_template(template_path), AwsTarget(endpoint), stack_name=stack_name, params=params)
    return stack.environment


class _OutputBuffer:
    """Collects a subprocess's output lines from a reader thread."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    def append(self, line: str) -> None:
        with self.changed:
            self._lines.append(line)
            self.changed.notify_all()

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def search(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        with self._lock:
            for line in self._lines:
                match = pattern.search(line)
                if match:
                    return match
        return None


@dataclass
class LocalBridge:
    """A running ``python -m callbridge_local``."""

    process: subprocess.Popen[str]
    base_url: str
    aws_endpoint: str
    # AWS_* variables for clients of the runtime's moto, plus the functions' merged environment.
    env: dict[str, str] = field(default_factory=dict)
    _buffer: _OutputBuffer = field(default_factory=_OutputBuffer, repr=False)

    def output(self) -> str:
        """Everything the runtime printed so far (stdout and stderr, interleaved)."""
        return self._buffer.text()

    def wait_for_output(self, text: str, timeout: float = 10.0) -> list[str]:
        """The output lines containing ``text``, waiting up to ``timeout`` seconds for a first one:
        the runtime's output reaches us through a pipe, after its HTTP answer."""
        deadline = time.monotonic() + timeout
        while True:
            found = [line for line in self.output().splitlines() if text in line]
            if found or time.monotonic() >= deadline:
                return found
            with self._buffer.changed:
                self._buffer.changed.wait(0.1)

    def url(self, path: str) -> str:
        return self.base_url + path

    def client(self, service: str) -> Any:
        """A boto3 client for the runtime's emulated AWS."""
        return AwsTarget(self.aws_endpoint).client(service)

    def stop(self, sig: signal.Signals = signal.SIGINT, timeout: float = 10.0) -> int | None:
        """Send ``sig`` (Ctrl-C by default) and wait; the exit code, or None if still running."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def _terminate(process: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0)):
        if process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        process.kill()
        process.wait(10)


def _pump(stream: Any, buffer: _OutputBuffer) -> None:
    for line in iter(stream.readline, ""):
        buffer.append(line)
    stream.close()


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own 127.0.0.1 URL
        return json.load(response)


def _fail_on_denied_calls(base_url: str) -> None:
    denied = _get_json(base_url + "/_local/iam").get("denied") or []
    if denied:
        counts = Counter(f"{d.get('function')}: {d.get('action')} on {d.get('resource')}" for d in denied)
        lines = "\n".join(f"  {n} x {call}" for call, n in counts.most_common())
        raise AssertionError(f"AWS would deny these calls (the functions' roles in template.yaml):\n{lines}")


@contextmanager
def running_bridge(
    accounts_dir: Path | None,
    extra_env: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    port: int = 0,
    *,
    template: Path | str | None = None,
    schedules: bool = False,
    startup_timeout: float = 60.0,
    host: str = LOCALHOST,
    env_vars_file: Path | None = None,
    max_batching_window: float | None = None,
    allow_denied: bool = False,
) -> Iterator[LocalBridge]:
    """Run ``python -m callbridge_local`` as a subprocess on free ports until the block exits.

    ``accounts_dir=None`` applies no account files. Scheduled runs are off unless ``schedules``
    (tests trigger them with POST /_local/schedules/<Function>). ``host`` is the gateway's --host;
    the URLs it yields are loopback ones whatever it is. Raises BridgeStartupError if the runtime
    is not ready within ``startup_timeout`` seconds. The `sam local --env-vars` file is written to
    ``env_vars_file`` only (never beside the template: tests run side by side). SQS batches wait at
    most ``max_batching_window`` seconds to fill; None (the default) waits out what the mappings declare,
    as Lambda does: a test of how deliveries are batched (tests/e2e/test_delivery_e2e.py) depends on it.

    A call that a function's role does not allow fails the block when it ends (unless
    ``allow_denied``), even where the product caught the AccessDenied and carried on: on AWS that
    would be a silent loss of whatever the call was for (tools/callbridge_local/iam.py).
    """
    command = [
        sys.executable,
        "-m",
        "callbridge_local",
        "--host",
        host,
        "--port",
        str(port),
        "--aws-port",
        "0",
        "--template",
        str(Path(template or DEFAULT_TEMPLATE).resolve()),
        "--accounts",
        "" if accounts_dir is None else str(Path(accounts_dir).resolve()),
        "--env-vars",
        "" if env_vars_file is None else str(Path(env_vars_file).resolve()),
    ]
    for key, value in (params or {}).items():
        command += ["--param", f"{key}={value}"]
    if not schedules:
        command.append("--no-schedules")
    if max_batching_window is not None:
        command += ["--max-batching-window", str(max_batching_window)]
    env = dict(os.environ)
    env.pop(MOTO_ACCOUNT_ID, None)  # the runtime's own moto: its stack is in the default account
    env.update(extra_env or {})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TOOLS_DIR), env.get("PYTHONPATH", "")) if p)

    buffer = _OutputBuffer()
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
    )
    reader = threading.Thread(target=_pump, args=(process.stdout, buffer), name="bridge-output", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            ready = buffer.search(_READY)
            if ready or process.poll() is not None or time.monotonic() >= deadline:
                break
            with buffer.changed:
                buffer.changed.wait(0.2)
        if ready is None:
            code = process.poll()
            if code is not None:
                reader.join(5)
            state = f"exited with code {code}" if code is not None else f"was not ready after {startup_timeout:g} s"
            raise BridgeStartupError(f"python -m callbridge_local {state}; output:\n{buffer.text()}")
        base_url = ready.group(1)
        endpoint_match = buffer.search(_AWS_ENDPOINT)
        info = _get_json(base_url + "/_local/env")
        aws_endpoint = endpoint_match.group(1) if endpoint_match else str(info["awsEndpoint"])
        bridge_env = {**aws_env(aws_endpoint, str(info.get("region", DEFAULT_REGION))), **info["environment"]}
        yield LocalBridge(process, base_url, aws_endpoint, bridge_env, buffer)
        # A block that stopped the runtime itself (a test of Ctrl-C) has no one left to ask.
        if not allow_denied and process.poll() is None:
            _fail_on_denied_calls(base_url)
    finally:
        _terminate(process)
        reader.join(5)
