"""bench/benchmark.py end to end at the smallest size: it runs, stops what it starts and writes every
figure the full run does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callbridge_local.template import load_template
from tests.bench_runs import run_bench

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # two cold start passes (bench/benchmark.py), on a loaded machine
COLD_RUNS, WARM_CALLS, GATEWAY_REQUESTS = 2, 50, 50

pytestmark = pytest.mark.e2e


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_quick_run_writes_every_figure(tmp_path: Path) -> None:
    status, output = run_bench("benchmark.py", "--quick", "--cold-runs", str(COLD_RUNS), "--warm-calls",
                               str(WARM_CALLS), "--gateway-requests", str(GATEWAY_REQUESTS), "--results-dir",
                               str(tmp_path), timeout=TIMEOUT)  # fmt: skip
    assert status == 0, output
    assert "median of paired ratios" in output and "× GC-paused floor" in output and "Goals: " in output, output
    assert len(list(tmp_path.glob("benchmark-*.json"))) == 1
    results = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))

    assert {"timestamp", "machine", "config", "cold_start", "goals", "import_profile", "warm", "gateway"} <= set(
        results
    )
    assert results["machine"]["python"] and _positive(results["machine"]["cpu_count"])

    http_functions = {f.logical_id for f in load_template(ROOT / "template.yaml").functions.values() if f.http_events}
    # Every HTTP function, both floors, and the contact path's other number form (bench/benchmark.py).
    floors = {"FloorFunction", "FloorFunction, GC paused"}
    assert set(results["cold_start"]) == http_functions | floors | {"ContactFunction, trunk prefix"}
    passes = results["config"]["cold_passes"]
    assert passes >= 2
    for name, cold in results["cold_start"].items():
        for metric in ("total_ms", "import_ms", "first_call_ms"):
            assert cold[metric]["n"] == COLD_RUNS * passes, (name, metric)
            assert all(_positive(cold[metric][k]) for k in ("p50", "p90", "p99")), (name, metric, cold[metric])
        for paired in ("paired_ratio_to_floor", "paired_ratio_to_gc_paused_floor"):
            ratio = cold[paired]
            assert ratio["n"] == COLD_RUNS * passes and len(ratio["per_pass"]) == passes, (name, paired, ratio)
            assert _positive(ratio["median"]) and all(map(_positive, ratio["per_pass"])), (name, paired, ratio)
        assert cold["ratio_to_floor"] == cold["paired_ratio_to_floor"]["median"], name
    # Each round's floor over itself.
    assert results["cold_start"]["FloorFunction"]["paired_ratio_to_floor"]["median"] == 1

    assert set(results["goals"]) == http_functions
    assert [g["goal"] for g in results["goals"]["HealthFunction"]] == [1.3]
    contact = results["goals"]["ContactFunction"]
    assert [(g["against"], g["goal"]) for g in contact] == [("floor", 1.3), ("GC-paused floor", 1.1)]
    assert all(_positive(g["ratio"]) and isinstance(g["met"], bool) for g in contact)

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
