"""The call history query (features/calls.py over store/call_pages.py) against the emulated
DynamoDB with a read budget small enough to run out: a sparse filter then answers short or empty
pages that still go on, and every matching call still comes exactly once, newest first."""

from __future__ import annotations

from typing import Any

import pytest

from callbridge.core.accounts import get_account
from callbridge.core.record import FinalCall
from callbridge.core.terms import Direction, Marker, Outcome, StartSource
from callbridge.features import calls as history
from callbridge.store import call_pages, calls

COUNT = 300


def seed() -> list[dict[str, Any]]:
    made = []
    for n in range(COUNT):
        call_id = f"P{n:04d}"
        user = "rare" if n % 40 == 0 else "andy"
        call = FinalCall(
            call_id=call_id,
            source="cloudpbx",
            marker=Marker("history", "in", user),
            direction=Direction.IN,
            outcome=Outcome.ANSWERED,
            phone="+79101234567",
            phone_raw="79101234567",
            started_at=f"2026-10-01T{n // 60:02d}:{n % 60:02d}:00Z",
            start_source=StartSource.PBX,
            user=user,
        )
        made.append(call.attributes("demo", "2026-11-01T00:00:00Z"))
    calls.batch_put(calls.call_item("demo", a["call_id"], a) for a in made)
    return made


def walk(where: history.CallFilter, limit: int) -> tuple[list[str], list[int]]:
    account = get_account("demo")
    ids: list[str] = []
    sizes: list[int] = []
    cursor = None
    while True:
        page = history.list_calls(account, where, limit=limit, cursor=cursor)
        ids += [c["call_id"] for c in page.calls]
        sizes.append(len(page.calls))
        cursor = page.next_cursor
        if cursor is None:
            return ids, sizes
        assert len(sizes) < COUNT


def newest_first(made: list[dict[str, Any]]) -> list[str]:
    return [a["call_id"] for a in sorted(made, key=lambda a: a["gsi1sk"], reverse=True)]


def test_a_sparse_filter_on_a_spent_budget_gives_short_pages_that_go_on(cloud, monkeypatch: pytest.MonkeyPatch):
    made = seed()
    monkeypatch.setattr(call_pages, "FILTERED_READ", 10)
    monkeypatch.setattr(call_pages, "MAX_QUERIES", 3)
    monkeypatch.setattr(call_pages, "MAX_EVALUATED", 25)
    ids, sizes = walk(history.CallFilter(user="rare"), limit=4)
    assert ids == newest_first([a for a in made if a["user"] == "rare"])
    # The budget (about 30 calls read a page) ran out before 4 matches: short and empty pages that
    # still had a cursor, and nothing lost between them.
    assert 0 in sizes[:-1] and max(sizes) < 4


def test_unfiltered_pages_are_full_and_the_last_one_is_not_empty(cloud):
    made = seed()
    ids, sizes = walk(history.CallFilter(), limit=7)
    assert ids == newest_first(made)
    assert sizes == [7] * (COUNT // 7) + [COUNT % 7]


def test_a_cursor_is_bound_to_its_filters(cloud):
    seed()
    account = get_account("demo")
    page = history.list_calls(account, history.CallFilter(user="andy"), limit=2)
    assert page.next_cursor
    with pytest.raises(history.BadQuery, match="cursor is invalid"):
        history.list_calls(account, history.CallFilter(user="rare"), limit=2, cursor=page.next_cursor)
    again = history.list_calls(account, history.CallFilter(user="andy"), limit=2, cursor=page.next_cursor)
    assert {c["call_id"] for c in again.calls}.isdisjoint(c["call_id"] for c in page.calls)
