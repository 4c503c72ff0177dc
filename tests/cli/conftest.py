"""CLI tests: every command runs against the local runtime (a real `python -m callbridge_local`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from callbridge.core.accounts import clear_account_cache
from callbridge.infra import aws, secrets
from callbridge.infra.settings import reset_settings
from callbridge_cli.main import cli
from callbridge_local.testing import running_bridge

ROOT = Path(__file__).resolve().parents[2]


def forget_core_caches() -> None:
    reset_settings()
    aws.reset_clients()
    secrets.reset_secret_cache()
    clear_account_cache()


@dataclass
class Cli:
    """Runs `callbridge --local <bridge> ...` in-process; the environment the CLI sets for the core
    is restored afterwards, so no test leaks table names or endpoints into the next."""

    bridge: Any

    def __call__(self, *args: str, input: str | None = None) -> Result:
        saved = dict(os.environ)
        try:
            return CliRunner().invoke(
                cli, ["--local", self.bridge.base_url, *args], input=input, catch_exceptions=False
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)
            forget_core_caches()


@pytest.fixture(scope="package")
def bridge() -> Iterator[Any]:
    with running_bridge(ROOT / "accounts", params={"MissedCallSettleSeconds": "1"}) as running:
        yield running


@pytest.fixture
def callbridge(bridge: Any) -> Cli:
    return Cli(bridge)
