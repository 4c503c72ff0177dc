"""End-to-end fixtures: the README's local runtime as a real subprocess, driven over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callbridge_local.testing import running_bridge
from tests.log_secrets import configured_secrets, leaked_lines

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def bridge() -> Iterator[Any]:
    with running_bridge(ROOT / "accounts", params={"MissedCallSettleSeconds": "1"}) as running:
        yield running
    output = running.output()  # after the runtime stopped: its shutdown lines are checked too
    # Every log line the e2e suite made the runtime print, checked for every configured secret.
    leaked = leaked_lines(output, configured_secrets(ROOT / "accounts"))
    assert not leaked, "secrets in the runtime's log lines:\n" + "\n".join(leaked)
