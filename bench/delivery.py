"""Delivery drain benchmark (docs/delivery.md), in process against moto with fake MiniCRM and retailCRM
servers on 127.0.0.1: N pending calls (both CRMs in batch mode), one drain, and

    requests sent per CRM vs the theoretical minimum (retailCRM: ceil(N / 50); MiniCRM: one per
    UserExtension, at most 1,000 records each), the drain's wall time, and DynamoDB items read per
    pending delivery (proportional to what is pending, whatever the history).

    python bench/delivery.py                  # 10,000 pending calls
    python bench/delivery.py --calls 500      # smoke size

Figures are comparable within one run only (moto, the machine and its load move them all).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "layers" / "common" / "python", ROOT / "functions", ROOT / "tools", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

ACCOUNT = "bench-delivery"
MINI_KEY, RETAIL_KEY = "bench-minicrm-key-01", "bench-retailcrm-key-01"
USERS = [f"user{i}" for i in range(10)]
T0 = datetime(2024, 5, 1, 6, 0, tzinfo=UTC)


def call_item(n: int) -> dict[str, Any]:
    from callbridge.store.keys import CALL_SK, call_pk

    user = USERS[n % len(USERS)]
    return {
        "pk": call_pk(ACCOUNT, f"b{n:06d}"),
        "sk": CALL_SK,
        "account": ACCOUNT,
        "call_id": f"b{n:06d}",
        "source": "cloudpbx",
        "final": True,
        "direction": "out" if n % 2 else "in",
        "outcome": "answered",
        "user": user,
        "phone": f"+7916{n:07d}",
        "duration": 30 + n % 300,
        "started_at": (T0 - timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finalized_at": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def run(count: int) -> dict[str, Any]:
    from tests.fakes.crm_server import serve
    from tests.fakes.minicrm import FakeMiniCrm
    from tests.fakes.retailcrm import FakeRetailCrm

    from bench.in_process import in_process_stack
    from callbridge.core.config import AccountConfig
    from callbridge.features.admin import apply_account
    from callbridge.features.delivery import engine
    from callbridge.infra import aws, clock, settings
    from callbridge.store import deliveries as store
    from callbridge.store.dynamo import to_item

    mini, retail = FakeMiniCrm(MINI_KEY), FakeRetailCrm(RETAIL_KEY)
    with (
        in_process_stack(PUBLIC_BASE_URL="https://bridge.example.com"),
        serve(mini) as mini_url,
        serve(retail) as retail_url,
    ):
        apply_account(
            AccountConfig.model_validate(
                {
                    "account": ACCOUNT,
                    "phone_region": "RU",
                    "pbx": {"kind": "cloudpbx", "crm_tokens": ["bench-delivery-token-0001"]},
                    "crms": [
                        {"kind": "minicrm", "base_url": mini_url, "api_key": MINI_KEY, "mode": "batch"},
                        {
                            "kind": "retailcrm",
                            "base_url": retail_url,
                            "api_key": RETAIL_KEY,
                            "mode": "batch",
                            "client_id": "bench-client-id-000001",
                        },
                    ],
                    "users": [
                        {"pbx_user": u, "extension": str(100 + i), "retailcrm_user_id": i + 1}
                        for i, u in enumerate(USERS)
                    ],
                    # the fake CRMs on loopback, trusted host:port (docs/accounts.md, trusted_hosts)
                    "trusted_hosts": [url.removeprefix("http://") for url in (mini_url, retail_url)],
                }
            )
        )
        clock.set_clock(lambda: T0)
        client, table = aws.dynamodb(), settings.get_settings().calls_table
        calls = [call_item(n) for n in range(count)]
        items = list(calls)
        for call in calls:
            for crm in ("minicrm", "retailcrm"):
                items.append(
                    {
                        "pk": call["pk"],
                        "sk": store.dlv_sk(crm),
                        "account": ACCOUNT,
                        "call_id": call["call_id"],
                        "crm": crm,
                        "crm_kind": crm,
                        "mode": "batch",
                        "state": store.PENDING,
                        "attempts": 0,
                        "created_at": clock.iso(T0),
                        "dlv_pk": store.queue_key(ACCOUNT, crm),
                        "dlv_due": store.due_key(T0, call["call_id"]),
                    }
                )

        def write(chunk: list[dict[str, Any]]) -> None:
            pending: Any = {table: [{"PutRequest": {"Item": to_item(i)}} for i in chunk]}
            while pending:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(write, [items[i : i + 25] for i in range(0, len(items), 25)]))

        read = Counter[str]()

        def count_reads(parsed: dict[str, Any], model: Any, **_: Any) -> None:
            read["items"] += int(parsed.get("Count") or 0)
            read["items"] += sum(len(v) for v in (parsed.get("Responses") or {}).values())

        for op in ("Query", "BatchGetItem", "GetItem", "Scan"):
            client.meta.events.register(f"after-call.dynamodb.{op}", count_reads)
        started = time.perf_counter()
        report = engine.drain(accounts=[ACCOUNT])
        wall = time.perf_counter() - started
        clock.set_clock(None)
    per_user = Counter(call["user"] for call in calls)
    mini_min = sum(math.ceil(n / 1000) for n in per_user.values())
    return {
        "pending_calls": count,
        "deliveries": 2 * count,
        "delivered": report.delivered,
        "retailcrm": {"requests": len(retail.uploads), "minimum": math.ceil(count / 50),
                      "max_calls_per_request": max((len(u) for u in retail.uploads), default=0)},
        "minicrm": {"requests": len(mini.requests), "minimum": mini_min, "users": len(per_user)},
        "drain_wall_s": round(wall, 2),
        "deliveries_per_s": round(2 * count / wall, 1) if wall else None,
        "dynamodb_items_read_per_delivery": round(read["items"] / (2 * count), 2),
        "spec_violations": retail.errors + mini.errors,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000, help="pending calls (default 10,000)")
    args = parser.parse_args(argv)
    result = run(args.calls)
    print(json.dumps(result, indent=2))
    ok = (
        result["delivered"] == result["deliveries"]
        and result["retailcrm"]["requests"] == result["retailcrm"]["minimum"]
        and result["minicrm"]["requests"] == result["minicrm"]["minimum"]
        and not result["spec_violations"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
