"""bench/cost.py's arithmetic (the figures themselves come from running it, `make bench-cost`), and the
scripts that call the SAM CLI keeping its telemetry off."""

from __future__ import annotations

import re
from pathlib import Path

from bench.cost import Invocation, PlannedCall, item_size, lambda_ms, plan_day, read_units, write_units

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


def test_lambda_duration_scales_cpu_by_the_memorys_vcpu_share_and_prices_aws_calls():
    call = Invocation("F", wall_ms=500.0, cpu_ms=10.0, aws_ms=480.0, aws_calls=2)
    # At 1,769 MB a full vCPU: CPU as measured; moto's 480 ms become 2 × 8 ms; 10 ms other waiting.
    assert lambda_ms(call, 1769) == 10 + 16 + 10
    assert lambda_ms(call, 256) == -(-(10 * 1769 / 256 + 16 + 10) // 1)


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
