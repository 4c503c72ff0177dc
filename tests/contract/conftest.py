"""The integration fixtures, imported rather than copied (the session's moto server, the way `cloud`
provisions template.yaml and resets the caches), and what the contract tests add: the stack
provisioned once for the run (re-provisioning per test costs seconds each, and the contract tests
are many), a fresh account id per test instead, a frozen clock and captured logs."""

from __future__ import annotations

import itertools
import logging
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from datetime import UTC, datetime
from typing import Any

import pytest

from callbridge.infra import clock
from callbridge_local.testing import provisioned
from tests.integration.conftest import ROOT, _reset_caches, aws_endpoint  # noqa: F401  (a fixture, by import)

T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
_accounts = itertools.count(1)


@pytest.fixture(scope="session")
def stack_env(aws_endpoint: str) -> Iterator[dict[str, str]]:  # noqa: F811
    """As tests.integration.conftest.cloud, once: moto reset, template.yaml provisioned."""
    request = urllib.request.Request(f"{aws_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"AWS_ENDPOINT_URL": aws_endpoint, **AWS_ENV}.items():
            patch.setenv(name, value)
        env = provisioned(aws_endpoint, ROOT / "template.yaml", params={"MissedCallSettleSeconds": "0"})
        yield {"AWS_ENDPOINT_URL": aws_endpoint, **AWS_ENV, **env}


@pytest.fixture
def account_id(stack_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new account id in the provisioned stack (tests share its tables, never an account)."""
    for name, value in stack_env.items():
        monkeypatch.setenv(name, value)
    _reset_caches()
    yield f"contract{next(_accounts)}"
    _reset_caches()


@pytest.fixture
def now() -> Iterator[list[datetime]]:
    """The product's clock, frozen at T0; a test moves it by assigning now[0]."""
    current = [T0]
    clock.set_clock(lambda: current[0])
    try:
        yield current
    finally:
        clock.set_clock(None)


class Logs:
    """Everything logged while a test ran: Powertools writes JSON lines to stdout (captured at the
    file descriptor, whatever stream the logger bound), the standard logging module to caplog."""

    def __init__(self, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture):
        self._capfd = capfd
        self._caplog = caplog
        self._seen: list[str] = []

    def text(self) -> str:
        out, err = self._capfd.readouterr()
        self._seen.extend([out, err])
        records = [f"{r.getMessage()} {r.__dict__}" for r in self._caplog.records]
        return "\n".join([*self._seen, *records])


@pytest.fixture
def logs(capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> Logs:
    caplog.set_level(logging.INFO)
    return Logs(capfd, caplog)


class FakeServers:
    """One server on 127.0.0.1 per way of serving a fake (tests.fakes.crm_server.serve,
    tests.fakes.base.serve) for the whole run, answering with the fake the current test put in place:
    starting and stopping a server costs half a second (its shutdown poll), times every test."""

    def __init__(self, stack: ExitStack):
        self._stack = stack
        self._servers: dict[Any, tuple[_Switch, str]] = {}

    def put(self, serve: Callable[[Any], AbstractContextManager[str]], fake: Any) -> str:
        """Serve `fake` (until the test ends); returns the server's base URL."""
        if serve not in self._servers:
            switch = _Switch()
            self._servers[serve] = (switch, self._stack.enter_context(serve(switch)))
        switch, url = self._servers[serve]
        switch.fake = fake
        return url

    def clear(self) -> None:
        for switch, _ in self._servers.values():
            switch.fake = None


class _Switch:
    fake: Any = None

    def handle(self, *args: Any) -> Any:
        if self.fake is None:
            return 503, {"error": "no fake in place"}, {}
        return self.fake.handle(*args)


@pytest.fixture(scope="session")
def _fake_servers() -> Iterator[FakeServers]:
    with ExitStack() as stack:  # every server stopped at the end, whatever happened
        yield FakeServers(stack)


@pytest.fixture
def fake_servers(_fake_servers: FakeServers) -> Iterator[FakeServers]:
    try:
        yield _fake_servers
    finally:
        _fake_servers.clear()
