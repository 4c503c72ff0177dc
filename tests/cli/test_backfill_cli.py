"""`callbridge backfill` against the local runtime and a fake ccrm.pl / telediscount on 127.0.0.1:
10,000 calls with a progress bar, interrupted by a failing page and resumed, stored once; a second
run changes nothing; store-only imports are never delivered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Cli
from tests.fakes.base import serve
from tests.fakes.ccrm import FakeCcrm, record
from tests.fakes.telediscount import FakeTelediscount
from tests.support import call_ids, trusting_fakes_yaml

pytestmark = pytest.mark.timeout(480)  # as test_cloudpbx_backfill_cli: 120 s ran out on a loaded machine
CCRM_KEY = "cli-backfill-ccrm-key-0001"
TD_KEY = "cli-backfill-td-key-0001"

CCRM_ACCOUNT = """\
account: {name}
phone_region: PL
pbx: {{kind: ccrm, base_url: "{base}", api_key: {key}}}
users:
  - {{pbx_user: jan, ccrm_internal: "107"}}
crms:
  - {{kind: minicrm, api_key: cli-backfill-minicrm-0001, base_url: "http://127.0.0.1:9"}}
"""
TD_ACCOUNT = """\
account: tdback
phone_region: RU
pbx: {{kind: telediscount, api_url: "{base}/api.php/telephony", api_key: {key}, webhook_secret: cli-backfill-secret-0001}}
"""


@pytest.fixture
def ccrm() -> Iterator[tuple[FakeCcrm, str]]:
    fake = FakeCcrm(api_key=CCRM_KEY)
    with serve(fake) as base:
        yield fake, base


def apply(callbridge: Cli, tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(trusting_fakes_yaml(text), encoding="utf-8")
    result = callbridge("accounts", "apply", str(path))
    assert result.exit_code == 0, result.output


def call(bridge: Any, account: str, call_id: str) -> dict[str, Any]:
    item = bridge.client("dynamodb").get_item(
        TableName=bridge.env["CALLS_TABLE"], Key={"pk": {"S": f"CALL#{account}#{call_id}"}, "sk": {"S": "CALL"}}
    )["Item"]
    return {k: next(iter(v.values())) for k, v in item.items()}


def deliveries(bridge: Any, account: str, call_id: str) -> list[Any]:
    response = bridge.client("dynamodb").query(
        TableName=bridge.env["CALLS_TABLE"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :d)",
        ExpressionAttributeValues={":pk": {"S": f"CALL#{account}#{call_id}"}, ":d": {"S": "DLV#"}},
    )
    return list(response["Items"])


def test_backfill_of_10000_calls_resumes_after_an_interruption_and_stores_each_once(
    bridge: Any, callbridge: Cli, ccrm: tuple[FakeCcrm, str], tmp_path: Path
) -> None:
    fake, base = ccrm
    apply(callbridge, tmp_path, "ccrmback", CCRM_ACCOUNT.format(name="ccrmback", base=base, key=CCRM_KEY))
    fake.add(
        *(
            record(
                f"10000000-0000-4000-8000-{i:012d}",
                f"2024-03-{1 + i // 2000:02d} {i % 24:02d}:{i % 60:02d}:{i % 59:02d}",
            )
            for i in range(10_000)
        )
    )
    fake.broken_once = {5}
    args = ("backfill", "--account", "ccrmback", "--source", "ccrm", "--from", "2024-03-01", "--to", "2024-03-06")

    interrupted = callbridge(*args)
    assert interrupted.exit_code == 1
    assert "Run the same command again" in interrupted.output
    assert "4000/10000" in interrupted.output  # the progress bar, at the last page stored
    assert "stopped after 4000 records" in interrupted.output

    resumed = callbridge(*args)
    assert resumed.exit_code == 0, resumed.output
    assert "10000/10000" in resumed.output
    assert "resumed at 5" in resumed.output and "6000 new calls stored (not delivered)" in resumed.output
    # Nothing read twice but the failed page; totalCount reached at page 10.
    assert fake.pages_served() == [1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]
    assert len(call_ids(bridge, "ccrmback")) == 10_000  # 4000 + 6000 new: every call stored, once

    first = call(bridge, "ccrmback", "10000000-0000-4000-8000-000000000000")
    assert first["started_at"] == "2024-02-29T23:00:00Z"  # 2024-03-01 00:00:00 in Warsaw (CET)
    assert deliveries(bridge, "ccrmback", first["call_id"]) == []  # store-only: never delivered

    again = callbridge(*args)
    assert again.exit_code == 0 and "nothing to do" in again.output
    forced = callbridge(*args, "--again", "--deliver")
    assert forced.exit_code == 0, forced.output
    assert "0 new calls" in forced.output
    assert deliveries(bridge, "ccrmback", first["call_id"]) == []  # already stored: not delivered now


def test_ccrm_backfill_with_deliver_creates_the_deliveries(
    bridge: Any, callbridge: Cli, ccrm: tuple[FakeCcrm, str], tmp_path: Path
) -> None:
    fake, base = ccrm
    apply(callbridge, tmp_path, "ccrmdeliver", CCRM_ACCOUNT.format(name="ccrmdeliver", base=base, key=CCRM_KEY))
    fake.add(*(record(f"20000000-0000-4000-8000-{i:012d}", f"2024-04-01 10:{i:02d}:00") for i in range(5)))
    result = callbridge(
        "backfill",
        "--account",
        "ccrmdeliver",
        "--source",
        "ccrm",
        "--from",
        "2024-04-01",
        "--to",
        "2024-04-02",
        "--deliver",
    )
    assert result.exit_code == 0, result.output
    assert "5 new calls stored and queued for delivery" in result.output
    assert len(deliveries(bridge, "ccrmdeliver", "20000000-0000-4000-8000-000000000000")) == 1


def test_telediscount_backfill_and_refusals(bridge: Any, callbridge: Cli, tmp_path: Path) -> None:
    fake = FakeTelediscount(api_key=TD_KEY)
    fake.calls = [
        {
            "api_call_id": f"td{i:04d}",
            "setup_time": str(1714550400 + i * 60),
            "num_a": "79039998877",
            "connection_time": "0",
        }
        for i in range(50)
    ] + [{"api_call_id": "junk", "setup_time": "98798798797897", "num_a": "79039998877"}]
    with serve(fake) as base:
        apply(callbridge, tmp_path, "tdback", TD_ACCOUNT.format(base=base, key=TD_KEY))
        args = ("backfill", "--account", "tdback", "--source", "telediscount")
        result = callbridge(*args, "--from", "2024-05-01T08:00:00Z", "--to", "2024-05-01T08:29:59Z")
        assert result.exit_code == 0, result.output
        assert "30 records read: 30 new calls stored" in result.output
        wider = callbridge(*args, "--from", "2024-05-01T00:00:00Z", "--to", "2024-05-02T00:00:00Z")
        assert "50 records read: 20 new calls" in wider.output  # the first 30 were stored already
        assert len(call_ids(bridge, "tdback")) == 50

        wrong = callbridge(*args[:3], "--source", "ccrm", "--from", "2024-05-01", "--to", "2024-05-02")
        assert wrong.exit_code == 1 and "takes its calls from telediscount" in wrong.output
        backwards = callbridge(*args, "--from", "2024-05-02", "--to", "2024-05-01")
        assert backwards.exit_code == 1 and "before" in backwards.output
        assert callbridge(*args, "--from", "yesterday", "--to", "2024-05-01").exit_code == 2
