"""bench/cost.py's arithmetic (the figures themselves come from running it, `make bench-cost`), and the
scripts that call the SAM CLI keeping its telemetry off."""

from __future__ import annotations

import math
import re
from pathlib import Path

from bench.cost import (
    Arrivals,
    DayResult,
    Invocation,
    PlannedCall,
    item_size,
    lambda_ms,
    plan_day,
    read_units,
    realtime_latency,
    write_accounts,
    write_units,
)

from callbridge.core.config import load_account_file
from callbridge.features.recordings import open_download
from tests.integration.recording_server import RecordingServer, Reply

ROOT = Path(__file__).resolve().parents[2]


def test_item_sizes_follow_dynamodbs_rules():
    # Attribute names count; strings by UTF-8 bytes; numbers ~1 byte per two significant digits + 1.
    assert item_size({"pk": {"S": "abc"}}) == 2 + 3
    assert item_size({"n": {"N": "12345"}}) == 1 + 4
    assert item_size({"é": {"S": "ü"}}) == 2 + 2
    assert item_size({"m": {"M": {"a": {"BOOL": True}}}}) == 1 + 3 + 1 + 1 + 1
    assert item_size({"l": {"L": [{"S": "x"}, {"NULL": True}]}}) == 1 + 3 + 2 + 2


def test_request_units_round_up_per_kilobyte_and_per_four():
    assert (write_units(1), write_units(1024), write_units(1025)) == (1, 1, 2)
    assert (read_units(4096, True), read_units(4097, True), read_units(10, False)) == (1.0, 2.0, 0.5)


def test_lambda_duration_scales_cpu_by_the_memorys_vcpu_share_and_prices_aws_and_peer_calls():
    call = Invocation("F", wall_ms=900.0, cpu_ms=10.0, aws_ms=480.0, aws_calls=2, peer_calls=1, peer_ms=3.0)
    # At 1,769 MB a full vCPU: CPU as measured; moto's 480 ms become 2 × 8 ms, the fake CRM's 3 ms
    # the floor's 200 ms; the rest of the wall time (this machine's waiting) is not Lambda's.
    assert lambda_ms(call, 1769) == 10 + 16 + 200
    assert lambda_ms(call, 256) == -(-(10 * 1769 / 256 + 16 + 200) // 1)


def test_the_day_has_the_stated_mix_and_recordings_only_on_talked_calls():
    day = plan_day(1000)
    kinds = {k: sum(1 for c in day if c.kind == k) for k in ("answered", "group", "missed", "outgoing")}
    assert 420 < kinds["answered"] < 580 and 140 < kinds["missed"] < 260
    assert sum(c.recorded for c in day) == 700
    assert not any(c.recorded for c in day if c.kind == "missed")
    call = PlannedCall("acct-000003", "missed", "79160000003", recorded=False)
    hooks = call.webhooks("https://x/rec.mp3")
    assert [h["cmd"] for h in hooks] == ["contact", "event", "event", "event", "event", "history"]
    assert "link" not in hooks[-1] and call.account == "acct"


def test_scripts_that_call_the_sam_cli_turn_its_telemetry_off():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^export SAM_CLI_TELEMETRY := 0$", makefile, re.MULTILINE)
    script = (ROOT / "tools" / "test.sh").read_text(encoding="utf-8")
    assert script.index("export SAM_CLI_TELEMETRY=0") < script.index("sam validate")


def test_realtime_latency_counts_the_calls_that_reached_each_crm():
    planned = plan_day(4)
    hangups = {c.call_id: 100.0 for c in planned}
    day = DayResult(planned, hangups, api_requests=0, wall_s=1.0)
    arrivals = Arrivals()
    first, second, third, fourth = (c.call_id for c in planned)
    arrivals.at["minicrm"].update({first: 101.0, second: 102.0, third: 103.0, fourth: 104.0})
    arrivals.at["retailcrm"].update({first: 110.0, "a call of another day": 999.0})
    latency = realtime_latency(arrivals, day, planned)
    assert latency["n"] == 4 and latency["reached"] == {"minicrm": 4, "retailcrm": 1}
    assert (latency["p50"], latency["max"]) == (3.0, 10.0)
    nothing = realtime_latency(Arrivals(), day, planned)
    assert nothing["reached"] == {"minicrm": 0, "retailcrm": 0} and math.isnan(nothing["max"])


def test_the_benchmarks_account_lets_its_recordings_be_fetched(tmp_path: Path):
    # Plain http on loopback is trusted by host:port only: with a bare host the recordings were
    # refused and the "with recording" calls carried none.
    files = RecordingServer().start()
    try:
        files.route("/rec.mp3", Reply(200, b"ID3 recording"))
        link = files.url("/rec.mp3")
        write_accounts(tmp_path, "http://127.0.0.1:1", "http://127.0.0.1:2", link, "costday", "realtime")
        account = load_account_file(tmp_path / "costday.yaml")
        with open_download(link, allow_hosts=account.recordings.allow_hosts, max_bytes=1000, timeout_s=10) as got:
            assert got.status == 200 and b"".join(got.chunks()) == b"ID3 recording"
    finally:
        files.stop()
