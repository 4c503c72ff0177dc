"""End-to-end fixtures: the README's local runtime as a real subprocess, driven over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callbridge_local.testing import running_bridge

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="package")
def bridge() -> Iterator[Any]:
    with running_bridge(ROOT / "accounts", params={"MissedCallSettleSeconds": "1"}) as running:
        yield running
