"""A wrong credential may be a freshly applied one: re-read at once, but a flood costs little."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from callbridge.infra import refresh
from callbridge.infra.refresh import RefreshBudget


def test_a_burst_then_one_a_second_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(refresh, "time", SimpleNamespace(monotonic=lambda: now[0]))
    budget = RefreshBudget(burst=5, per_second=1)
    assert [budget.allow("acme") for _ in range(7)] == [True] * 5 + [False] * 2
    assert budget.allow("other")  # each account has its own budget
    allowed = 0
    for _ in range(1000):  # a flood of wrong tokens for 100 s: about one re-read a second
        now[0] += 0.1
        allowed += budget.allow("acme")
    assert 99 <= allowed <= 101
