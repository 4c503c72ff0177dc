"""bench/routing.py at the smallest size: it runs, stops what it starts and reports every routing
path of `contact`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 20

pytestmark = pytest.mark.e2e


def test_quick_routing_benchmark_reports_every_path(tmp_path: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in ("layers/common/python", "functions", "tools"))
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "routing.py"),
            "--requests",
            str(REQUESTS),
            "--results-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((tmp_path / "routing-latest.json").read_text(encoding="utf-8"))
    assert set(results["contact"]) == {"directory hit", "cached CRM answer", "in-process cache", "live CRM answer"}
    for name, stats in results["contact"].items():
        assert stats["n"] == REQUESTS, name
        assert 0 < stats["p50"] <= stats["p99"] <= stats["max"], (name, stats)
    # A live answer includes the fake CRM's 50 ms; a cached one never asks it.
    assert results["contact"]["live CRM answer"]["p50"] >= 50
    assert "live CRM answer" in done.stdout
