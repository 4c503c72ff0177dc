"""`callbridge backfill --source cloudpbx` against the local runtime and a fake Cloud PBX on 127.0.0.1
whose `history` command answers CSV as the PBX writes it: 10,000 calls with a progress count,
interrupted by a PBX failure in the middle and resumed without reading a slice twice, each call
stored once (one of them already stored by its webhook), a malformed line reported, not fatal; a
second run changes nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import Cli
from tests.fakes.cloudpbx_api import PATH, FakeCloudPbx, HistoryCall
from tests.fakes.crm_server import serve
from tests.support import call_ids, form, trusting_fakes_yaml

pytestmark = pytest.mark.timeout(480)  # ~40 s on an idle machine; shared runners are slower
PBX_TOKEN = "cli-backfill-cloudpbx-token-01"
CRM_TOKEN = "cli-backfill-cloudpbx-crm-token-01"
ACCOUNT = """\
account: cpback
timezone: Europe/Moscow
phone_region: RU
pbx: {{kind: cloudpbx, api_url: "{base}{path}", token: {token}, crm_tokens: [{crm_token}]}}
users:
  - {{pbx_user: andy, extension: "101"}}
"""
CALLS = 10_000
FIRST = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def pbx() -> Iterator[tuple[FakeCloudPbx, str]]:
    fake = FakeCloudPbx(PBX_TOKEN)
    with serve(fake) as base:
        yield fake, base


def stored(bridge: Any, call_id: str) -> dict[str, Any]:
    item = bridge.client("dynamodb").get_item(
        TableName=bridge.env["CALLS_TABLE"], Key={"pk": {"S": f"CALL#cpback#{call_id}"}, "sk": {"S": "CALL"}}
    )["Item"]
    return {k: next(iter(v.values())) for k, v in item.items()}


def test_cloudpbx_backfill_of_10000_calls_resumes_after_a_failure_and_stores_each_once(
    bridge: Any, callbridge: Cli, pbx: tuple[FakeCloudPbx, str], tmp_path: Path
) -> None:
    fake, base = pbx
    path = tmp_path / "cpback.yaml"
    path.write_text(
        trusting_fakes_yaml(ACCOUNT.format(base=base, path=PATH, token=PBX_TOKEN, crm_token=CRM_TOKEN)),
        encoding="utf-8",
    )
    assert callbridge("accounts", "apply", str(path)).exit_code == 0
    # 10,000 calls over five days (a call every 43 s), in, out and missed, as the PBX keeps them.
    fake.history = [
        HistoryCall(
            uid=f"bf{i:05d}-0000-4000-8000-cloudpbx",
            type=("in", "out", "missed")[i % 3],
            client=f"7903{i:07d}",
            account="andy",
            via="74996861574",
            start=FIRST + timedelta(seconds=43 * i),
            wait=i % 30,
            duration=0 if i % 3 == 2 else 10 + i % 500,
            record=f"https://pbx.example.com/rec/{i}.mp3" if i % 100 == 0 else "",
        )
        for i in range(CALLS)
    ]
    fake.junk_lines = ["broken-0001,in,79030000000,andy"]  # a cut line in every answer
    # One call whose webhook came long ago: the backfill must not store it a second time.
    webhooked = fake.history[6000]  # in the part read after the failure
    body = form(
        cmd="history", crm_token=CRM_TOKEN, type="in", status="Success", phone=webhooked.client, user="andy",
        duration=str(webhooked.duration), callid=webhooked.uid, start=webhooked.start.strftime("%Y%m%dT%H%M%SZ"),
    )  # fmt: skip
    with httpx.Client(timeout=30) as http:
        response = http.post(
            bridge.base_url + "/v1/cpback/cloudpbx",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 200, response.text
    # The PBX fails after ten answers (twice: our client's retry too).
    fake.fail_history_after, fake.fail_history_times = 10, 2
    args = ["backfill", "--account", "cpback", "--source", "cloudpbx"]
    args += ["--from", "2024-03-01T00:00:00Z", "--to", "2024-03-06T00:00:00Z"]

    started = time.monotonic()
    interrupted = callbridge(*args)
    assert interrupted.exit_code == 1, interrupted.output
    first_part = sum(1 for c in fake.history if c.start < FIRST + timedelta(hours=60))  # ten 6-hour slices
    assert f"stopped after {first_part} records" in interrupted.output
    assert "Run the same command again" in interrupted.output
    assert len(call_ids(bridge, "cpback")) == first_part + 1  # and the webhooked call

    resumed = callbridge(*args)
    took = time.monotonic() - started
    assert resumed.exit_code == 0, resumed.output
    assert f"{CALLS}/" in resumed.output  # the progress count reached every record
    new = CALLS - first_part - 1  # the webhooked call is in the second part
    assert f"{CALLS - first_part} records read, resumed at 10: {new} new calls stored (not delivered)" in resumed.output
    assert "10 unreadable records skipped" in resumed.output  # one bad line in each of the ten answers
    assert fake.history_served == 20  # 20 slices, none read twice
    ids = call_ids(bridge, "cpback")
    assert len(ids) == len(set(ids)) == CALLS

    sample = stored(bridge, fake.history[0].uid)
    assert (sample["started_at"], sample["outcome"], sample["phone"]) == (
        "2024-03-01T00:00:00Z",
        "answered",
        "+79030000000",
    )
    assert sample["recording_url"] == "https://pbx.example.com/rec/0.mp3"
    assert stored(bridge, fake.history[2].uid)["outcome"] == "missed"
    kept = stored(bridge, webhooked.uid)
    assert kept["pbx_status"] == "Success" and "recovered_from" not in kept  # its webhook's call, untouched

    again = callbridge(*args)
    assert again.exit_code == 0 and "nothing to do" in again.output
    # The last day read once more (--again): every call is known, nothing is stored twice.
    last_day = [*args[:5], "--from", "2024-03-05T00:00:00Z", "--to", "2024-03-06T00:00:00Z", "--again"]
    in_last_day = sum(1 for c in fake.history if c.start >= FIRST + timedelta(days=4))
    forced = callbridge(*last_day)
    assert forced.exit_code == 0 and f"{in_last_day} records read: 0 new calls" in forced.output, forced.output
    assert fake.errors == []
    print(f"backfill of {CALLS} calls (with the interruption): {took:.1f} s")
