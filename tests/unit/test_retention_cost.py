"""bench/cost.py's recordings bill by retention tier (docs/cost.md, "Recordings")."""

from __future__ import annotations

import math

import pytest
from bench.cost import GLACIER_IR, PRICES, RECORDED_SHARE, RECORDING_BYTES, recording_storage_month

from callbridge.core import retention
from callbridge.features.recordings.layout import recording_key
from tests.recording_lifecycle import fate, lifecycle_rules


def test_a_year_in_standard_is_a_years_recordings_at_standards_price():
    gb = 50_000 * RECORDED_SHARE * RECORDING_BYTES / 1e9 * 365
    assert math.isclose(recording_storage_month(50_000, 365, 0), gb * PRICES["s3_gb_month"])


def test_with_the_transition_a_year_is_30_days_in_standard_the_rest_in_glacier_ir_and_the_moves():
    per_day = 500 * RECORDED_SHARE
    expected = per_day * RECORDING_BYTES / 1e9 * (30 * PRICES["s3_gb_month"] + 335 * GLACIER_IR["gb_month"])
    expected += per_day * 730 / 24 * GLACIER_IR["transition"]
    assert math.isclose(recording_storage_month(500, 365, 30), expected)


@pytest.mark.parametrize("days", retention.TIERS)
def test_the_bill_moves_recordings_exactly_where_the_template_does(days):
    moved = fate(recording_key("a", "c", "https://x/r.mp3", days), lifecycle_rules()).transition_after is not None
    assert (recording_storage_month(5_000, days, 30) != recording_storage_month(5_000, days, 0)) == moved
    assert recording_storage_month(5_000, days, 30) <= recording_storage_month(5_000, days, 0)
