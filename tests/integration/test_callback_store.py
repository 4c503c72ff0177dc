"""The callback tasks' store on DynamoDB (moto over HTTP): missed calls of one caller handled at the
same instant start exactly one task per window; a retried call finds its task again; a reached
client starts a new task with his next missed call; opening is taken once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from callbridge.store import callbacks as store

PHONE = "+79160000042"


def join(call_id: str, at: str, lo: str, hi: str) -> tuple[dict[str, Any], bool]:
    return store.join_or_start("acc", "retailcrm", PHONE, call_id, at, lo, hi, "no_answer")


def test_missed_calls_at_the_same_instant_start_one_task(cloud: dict[str, str]) -> None:
    calls = [f"c{n}" for n in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda c: join(c, "2024-05-01T07:00:00Z", "2024-05-01T06:50:00Z", "2024-05-01T07:10:00Z"), calls)
        )
    assert sum(started for _, started in results) == 1
    (task,) = store.tasks("acc", "retailcrm", PHONE)
    assert task["calls"] == set(calls) and task["state"] == store.PENDING
    starter = next(t["starter"] for t, started in results if started)
    assert store.task_of_call("acc", "retailcrm", PHONE, starter) == task  # a retry finds it, starts nothing

    # Opening is taken once at a time; a second try counts as a retry (it looks for the marker first).
    first = store.begin_open("acc", "retailcrm", PHONE, task["sk"])
    assert first is not None and first["attempts"] == 1
    second = store.begin_open("acc", "retailcrm", PHONE, task["sk"])
    assert second is not None and second["attempts"] == 2
    store.opened("acc", "retailcrm", PHONE, task["sk"], "1001", "2024-05-01T07:00:05Z", False)
    assert store.begin_open("acc", "retailcrm", PHONE, task["sk"]) is None


def test_a_later_window_or_a_reached_client_starts_a_new_task(cloud: dict[str, str]) -> None:
    _, started = join("a", "2024-05-01T07:00:00Z", "2024-05-01T06:50:00Z", "2024-05-01T07:10:00Z")
    assert started
    _, started = join("b", "2024-05-01T07:05:00Z", "2024-05-01T06:55:00Z", "2024-05-01T07:15:00Z")
    assert not started  # within ten minutes of the first
    _, started = join("c", "2024-05-01T09:00:00Z", "2024-05-01T08:50:00Z", "2024-05-01T09:10:00Z")
    assert started  # two hours later: a new window
    store.reached("acc", "retailcrm", PHONE, "2024-05-01T09:02:00Z")
    store.reached("acc", "retailcrm", PHONE, "2024-05-01T09:01:00Z")  # an older answer changes nothing
    assert store.head("acc", "retailcrm", PHONE)["reached_at"] == "2024-05-01T09:02:00Z"
    _, started = join("d", "2024-05-01T09:04:00Z", "2024-05-01T08:54:00Z", "2024-05-01T09:14:00Z")
    assert started  # the client was reached since the task began: a new task
    assert sorted(len(t["calls"]) for t in store.tasks("acc", "retailcrm", PHONE)) == [1, 1, 2]
