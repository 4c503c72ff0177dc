"""bench/benchmark.py end to end at the smallest size: it runs, stops what it starts and writes every
figure the full run does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callbridge_local.template import load_template
from tests.bench_runs import run_bench

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 120
COLD_RUNS, WARM_CALLS, GATEWAY_REQUESTS = 2, 50, 50

pytestmark = pytest.mark.e2e


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    status, output = run_bench("benchmark.py", "--quick", "--cold-runs", str(COLD_RUNS), "--warm-calls",
                               str(WARM_CALLS), "--gateway-requests", str(GATEWAY_REQUESTS), "--results-dir",
                               str(tmp_path), timeout=TIMEOUT)  # fmt: skip
    assert status == 0, output
    assert "× floor" in output and "Goal: ContactFunction" in output, output
    assert len(list(tmp_path.glob("benchmark-*.json"))) == 1
    results = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))

    assert {"timestamp", "machine", "config", "cold_start", "goals", "import_profile", "warm", "gateway"} <= set(
        results
    )
    assert results["machine"]["python"] and _positive(results["machine"]["cpu_count"])

    http_functions = {f.logical_id for f in load_template(ROOT / "template.yaml").functions.values() if f.http_events}
    # Every HTTP function, the floor, and the contact path's other number form (bench/benchmark.py).
    assert set(results["cold_start"]) == http_functions | {"FloorFunction", "ContactFunction, trunk prefix"}
    for name, cold in results["cold_start"].items():
        for metric in ("total_ms", "import_ms", "first_call_ms"):
            assert cold[metric]["n"] == COLD_RUNS, (name, metric)
            assert all(_positive(cold[metric][k]) for k in ("p50", "p90", "p99")), (name, metric, cold[metric])
        assert _positive(cold["ratio_to_floor"]), name

    goal = results["goals"]["ContactFunction"]
    assert _positive(goal["ratio"]) and goal["goal"] == 1.1 and isinstance(goal["met"], bool)

    profile = results["import_profile"]
    assert profile["function"] == "ContactFunction"
    assert len(profile["top_cumulative"]) == 10
    assert all(_positive(row["cumulative_ms"]) for row in profile["top_cumulative"])

    for section, count in (("warm", WARM_CALLS), ("gateway", GATEWAY_REQUESTS)):
        for name in ("ContactFunction", "FloorFunction"):
            stats = results[section][name]
            assert stats["n"] == count, (section, name)
            assert all(_positive(stats[k]) for k in ("p50", "p99")), (section, name, stats)
        assert _positive(results[section]["ratio_p50"]), section
