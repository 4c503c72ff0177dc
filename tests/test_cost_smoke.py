"""bench/cost.py (make bench-cost) end to end at a smoke size, in the test command so that it cannot
silently break again: a paced day through the local runtime reaches both CRMs, and the model prints
the floor term by term, the owner's lines apart, and the ratio."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench_runs import run_bench

TIMEOUT = 180
CALLS, BATCH_CALLS = 12, 6

pytestmark = pytest.mark.e2e


def test_a_small_paced_day_prints_the_floor_and_the_ratio(tmp_path: Path) -> None:
    result = tmp_path / "cost.json"
    status, output = run_bench("cost.py", "--calls", str(CALLS), "--batch-calls", str(BATCH_CALLS), "--rate", "4",
                               "--timeout", "90", "--json", str(result), timeout=TIMEOUT)  # fmt: skip
    assert status == 0, output
    figures = json.loads(result.read_text(encoding="utf-8"))
    assert figures["complete"] is True
    assert figures["latency"]["realtime"]["reached"] == {"minicrm": CALLS, "retailcrm": CALLS}
    assert figures["latency"]["realtime"]["rate"] == 4
    assert figures["latency"]["batch"]["calls"] == BATCH_CALLS

    floor = figures["floor_per_call"]
    assert {"API Gateway request per webhook", "DynamoDB write per webhook (1 WRU)", "S3 PUT per recording"} <= set(
        floor
    )
    assert all(value > 0 for value in floor.values())
    assert figures["floor_total_per_call"] == pytest.approx(sum(floor.values()))
    # Storage (recordings, calls: as long as the owner keeps them) and playback are the owner's:
    # apart, and not in the ratio.
    for storage in ("S3 storage", "DynamoDB storage"):
        assert any(name.startswith(storage) for name in figures["owner_per_call"]), storage
        assert not any(name.startswith(storage) for name in figures["per_call"]), storage
    assert figures["ratio_owner_lines_aside"] == pytest.approx(
        sum(figures["per_call"].values()) / figures["floor_total_per_call"]
    )
    # The write units are accounted for by function and item.
    assert sum(figures["facts"]["wru_by_operation"].values()) == pytest.approx(figures["facts"]["wru"])
    assert figures["facts"]["item_bytes_per_call"] > 0
    for term in floor:
        assert term in output, term
    assert "× the floor, the owner's lines aside" in output
