"""Latency of the `contact` answer by routing path (docs/clicktocall.md), warm and in process against moto,
with a fake retailCRM on 127.0.0.1 that answers `telephony/manager` in 50 ms:

    directory hit       the caller is in our directory (one GetItem) + the owner's status (one GetItem)
    cached CRM answer   unknown to the directory, retailCRM's answer cached by another Lambda
                        (DynamoDB: one GetItem more; this Lambda's in-process copy cleared first)
    in-process cache    the same, found in this warm Lambda's own copy
    live CRM answer     a number nobody asked about: retailCRM is asked (50 ms) under the budget

    python bench/routing.py                     # 1,000 requests per path
    python bench/routing.py --requests 50       # smoke size

Figures are comparable within one run only (moto, the machine and its load move them all).
bench/benchmark.py measures cold start and the gateway; this script the warm routing paths.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT / "layers" / "common" / "python", ROOT / "functions", ROOT / "tools", ROOT):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from bench.benchmark import percentile  # noqa: E402

ACCOUNT = "bench-routing"
CRM_TOKEN = "bench-crm-token-000001"
CRM_KEY = "bench-retailcrm-key-0001"
CRM_DELAY_S = 0.05
DIRECTORY_PHONE = "+79100000001"
PATHS = ("directory hit", "cached CRM answer", "in-process cache", "live CRM answer")


def summary(samples_ms: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50": round(percentile(samples_ms, 50), 3),
        "p99": round(percentile(samples_ms, 99), 3),
        "max": round(max(samples_ms), 3),
    }


def phones(start: int, count: int) -> list[str]:
    return [f"+7916{start + i:07d}" for i in range(count)]


def run(requests: int) -> dict[str, Any]:
    from tests.fakes import crm_server
    from tests.fakes.cloudpbx_api import FakeManagerCrm
    from tests.support import form, http_event

    import contact  # functions/contact.py, the ContactFunction handler
    from bench.in_process import in_process_stack
    from callbridge.core.config import AccountConfig
    from callbridge.features import routing
    from callbridge.features.admin import apply_account

    cached_phones, live_phones = phones(0, requests), phones(500_000, requests)
    crm = FakeManagerCrm(api_key=CRM_KEY)
    manager = {"id": 1, "code": "100", "firstName": "Andrey"}
    for phone in cached_phones + live_phones:
        crm.owners[phone] = {"manager": manager, "customer": {"firstName": "Client", "lastName": phone[-4:]}}
        crm.delays[phone] = CRM_DELAY_S

    with in_process_stack(), crm_server.serve(crm) as crm_url:
        apply_account(
            AccountConfig.model_validate(
                {
                    "account": ACCOUNT,
                    "phone_region": "RU",
                    "pbx": {"kind": "cloudpbx", "crm_tokens": [CRM_TOKEN]},
                    "crms": [
                        {
                            "kind": "retailcrm",
                            "base_url": crm_url,
                            "api_key": CRM_KEY,
                            "client_id": "bench-client-id-000001",
                        }
                    ],
                    "users": [{"pbx_user": "andy", "extension": "100", "retailcrm_user_id": 1}],
                    "contacts": [{"name": "Directory Client", "phones": [DIRECTORY_PHONE], "responsible": "andy"}],
                    # the fake CRM on loopback, trusted host:port (docs/accounts.md, trusted_hosts)
                    "trusted_hosts": [crm_url.removeprefix("http://")],
                }
            )
        )

        def call(phone: str) -> dict[str, Any]:
            body = form(cmd="contact", phone=phone, crm_token=CRM_TOKEN, callid=f"bench-{phone}")
            response = contact.handler(http_event(f"/v1/{ACCOUNT}/cloudpbx/contact", body, account=ACCOUNT), None)
            if response["statusCode"] != 200:
                raise RuntimeError(f"contact answered {response}")
            answer: dict[str, Any] = json.loads(response["body"])
            return answer

        def timed(phone: str, before: Callable[[], None] | None = None) -> float:
            if before:
                before()
            started = time.perf_counter_ns()
            answer = call(phone)
            elapsed = (time.perf_counter_ns() - started) / 1e6
            if answer.get("responsible") != "andy":
                raise RuntimeError(f"{phone}: expected andy as responsible, got {answer}")
            return elapsed

        for _ in range(20):  # warm the clients, the account cache and the SSM cache
            call(DIRECTORY_PHONE)
        call(phones(900_000, 1)[0])

        samples: dict[str, list[float]] = {name: [] for name in PATHS}
        samples["directory hit"] = [timed(DIRECTORY_PHONE) for _ in range(requests)]
        samples["live CRM answer"] = [timed(phone) for phone in live_phones]
        # Fill the shared cache as other Lambdas would have, then read it from a "fresh" Lambda.
        for phone in cached_phones:
            call(phone)
        samples["cached CRM answer"] = [timed(p, routing.clear_memory_cache) for p in cached_phones]
        for phone in cached_phones:  # this warm Lambda's own copy, filled from the shared cache
            call(phone)
        samples["in-process cache"] = [timed(p) for p in cached_phones]
        asked_twice = [p for p in cached_phones + live_phones if crm.count(p) != 1]
        if asked_twice:
            raise RuntimeError(f"retailCRM asked more than once for {len(asked_twice)} numbers")
    return {name: summary(values) for name, values in samples.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000, help="requests per path (default 1000)")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    started = time.monotonic()
    figures = run(args.requests)
    print(f"contact latency by routing path, warm, in process ({args.requests} requests each; CRM answers in 50 ms)")
    print(f"  {'path':<20} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, stats in figures.items():
        print(f"  {name:<20} {stats['p50']:>8.2f} {stats['p99']:>8.2f} {stats['max']:>8.2f}")
    results = {
        "timestamp": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
        "requests": args.requests,
        "crm_delay_ms": CRM_DELAY_S * 1000,
        "cpu_count": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "contact": figures,
        "duration_s": round(time.monotonic() - started, 1),
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2) + "\n"
    path = args.results_dir / f"routing-{results['timestamp']}.json"
    path.write_text(text, encoding="utf-8")
    (args.results_dir / "routing-latest.json").write_text(text, encoding="utf-8")
    print(f"written {path} ({results['duration_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
