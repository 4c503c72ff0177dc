"""Call history API benchmark (GET /v1/{account}/calls, /calls/{callid}) through the local runtime
over HTTP: N calls written with the store's batch writes, then

    a page of calls: the whole history walked by cursor (`--limit` calls a page), p50 / p99 / max
    one call: `--shows` random calls with timeline, deliveries and recording, p50 / p99 / max
    and, for each, the emulator's own time for the same DynamoDB query (the rest is ours)

    python bench/calls_api.py                       # 10,000 calls, pages of 50
    python bench/calls_api.py --calls 1000 --limit 200

The emulated DynamoDB (moto) sorts the account's whole index on every query, so a page here costs
what the account holds; DynamoDB reads only the page. Figures compare within one run and machine.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "layers" / "common" / "python", ROOT / "functions", ROOT / "tools", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

ACCOUNT = "bench-calls"
API_KEY = "bench-calls-api-key-0001"
T0 = datetime(2026, 10, 1, tzinfo=UTC)


@contextmanager
def core_at(env: dict[str, str]) -> Iterator[None]:
    """The core's settings and AWS clients pointed at the runtime's emulated AWS."""
    from callbridge.infra import aws
    from callbridge.infra.settings import reset_settings

    saved = dict(os.environ)
    os.environ.update(env)
    reset_settings()
    aws.reset_clients()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        reset_settings()
        aws.reset_clients()


def seed(count: int) -> list[str]:
    from callbridge.core.record import FinalCall
    from callbridge.core.terms import Direction, Marker, Outcome, StartSource
    from callbridge.store import calls

    ids = [f"B{n:06d}" for n in range(count)]
    items = [
        calls.call_item(
            ACCOUNT,
            call_id,
            FinalCall(
                call_id=call_id,
                source="cloudpbx",
                marker=Marker("history", "in", "andy"),
                direction=Direction.IN if n % 2 else Direction.OUT,
                outcome=Outcome.ANSWERED,
                phone=f"+7916{n:07d}",
                phone_raw=f"7916{n:07d}",
                started_at=(T0 + timedelta(seconds=30 * n)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                start_source=StartSource.PBX,
                duration=30 + n % 300,
                user="andy",
                raw={"cmd": "history", "callid": call_id, "phone": f"7916{n:07d}", "duration": str(30 + n % 300)},
            ).attributes(ACCOUNT, "2026-11-01T00:00:00Z"),
        )
        for n, call_id in enumerate(ids)
    ]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(calls.batch_put, [items[i : i + 500] for i in range(0, len(items), 500)]))
    return ids


def figures(name: str, times: list[float]) -> dict[str, Any]:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "what": name,
        "requests": len(times),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def run(count: int, limit: int, shows: int, pages: int | None) -> list[dict[str, Any]]:
    import httpx

    from callbridge_local.testing import running_bridge

    with tempfile.TemporaryDirectory() as accounts:
        Path(accounts, f"{ACCOUNT}.yaml").write_text(
            f"account: {ACCOUNT}\nphone_region: RU\npbx: {{kind: cloudpbx, crm_tokens: [bench-calls-crm-token-01]}}\n"
            f"api_keys: [{API_KEY}]\n",
            encoding="utf-8",
        )
        with running_bridge(Path(accounts)) as bridge:
            started = time.perf_counter()
            with core_at(bridge.env):
                ids = seed(count)
            print(f"seeded {count} calls in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            headers = {"authorization": f"Bearer {API_KEY}"}
            with httpx.Client(base_url=bridge.base_url, headers=headers, timeout=60) as http:
                http.get(f"/v1/{ACCOUNT}/calls", params={"limit": "1"})  # the cold start, not measured
                page_times: list[float] = []
                seen = 0
                cursor: str | None = None
                while True:
                    params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
                    began = time.perf_counter()
                    response = http.get(f"/v1/{ACCOUNT}/calls", params=params)
                    page_times.append(time.perf_counter() - began)
                    response.raise_for_status()
                    body = response.json()
                    seen += len(body["calls"])
                    cursor = body["next_cursor"]
                    if cursor is None or (pages is not None and len(page_times) >= pages):
                        break
                if pages is None and seen != count:
                    raise SystemExit(f"paged {seen} calls of {count}")
                show_times: list[float] = []
                for call_id in random.Random(7).sample(ids, min(shows, len(ids))):
                    began = time.perf_counter()
                    response = http.get(f"/v1/{ACCOUNT}/calls/{call_id}")
                    show_times.append(time.perf_counter() - began)
                    response.raise_for_status()
            floor_pages, floor_shows = floors(bridge, limit, ids, len(page_times), len(show_times))
    return [
        figures(f"page of {limit} calls ({count} in the account)", page_times),
        figures("  emulator alone: the page's index query", floor_pages),
        figures("one call", show_times),
        figures("  emulator alone: the call's partition query", floor_shows),
    ]


def floors(bridge: Any, limit: int, ids: list[str], pages: int, shows: int) -> tuple[list[float], list[float]]:
    """The emulated DynamoDB's own time for the queries a request makes (what is ours is the rest):
    moto sorts the whole index for every query, where DynamoDB reads only the page."""
    from callbridge.store.keys import call_pk

    client = bridge.client("dynamodb")
    table = bridge.env["CALLS_TABLE"]
    page_times: list[float] = []
    for _ in range(min(pages, 50)):
        began = time.perf_counter()
        client.query(
            TableName=table,
            IndexName="ByAccount",
            KeyConditionExpression="gsi1pk = :a",
            ExpressionAttributeValues={":a": {"S": ACCOUNT}},
            ScanIndexForward=False,
            Limit=limit + 1,
        )
        page_times.append(time.perf_counter() - began)
    show_times: list[float] = []
    for call_id in random.Random(8).sample(ids, min(shows, len(ids))):
        began = time.perf_counter()
        client.query(
            TableName=table,
            KeyConditionExpression="pk = :p",
            ExpressionAttributeValues={":p": {"S": call_pk(ACCOUNT, call_id)}},
            ConsistentRead=True,
        )
        show_times.append(time.perf_counter() - began)
    return page_times, show_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--limit", type=int, default=50, help="calls a page")
    parser.add_argument("--shows", type=int, default=200, help="single-call requests")
    parser.add_argument("--pages", type=int, default=None, help="stop after this many pages (default: all)")
    args = parser.parse_args()
    rows = run(args.calls, args.limit, args.shows, args.pages)
    print(f"{'what':<48} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for row in rows:
        print(f"{row['what']:<48} {row['requests']:>8} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8}")


if __name__ == "__main__":
    main()
