"""Recording retention: the account's tier (core/retention.py), the key a recording is stored under,
and the bucket lifecycle of template.yaml (as transformed for CloudFormation) that deletes it."""

from __future__ import annotations

import string
from typing import Any

import pytest
from pydantic import ValidationError

from callbridge.core import retention
from callbridge.core.config import AccountConfig
from callbridge.features.recordings.layout import call_prefixes, recording_key
from callbridge.store.keys import ACCOUNT_ID
from callbridge_local.template import load_template
from tests.recording_lifecycle import TEMPLATE, fate, lifecycle_rules

LINK = "https://pbx.example/rec/call.mp3"


def account(**recordings: Any) -> AccountConfig:
    return AccountConfig.model_validate(
        {
            "account": "demo",
            "phone_region": "RU",
            "pbx": {"kind": "cloudpbx", "crm_tokens": ["demo-crm-token-000001"]},
            "recordings": recordings,
        }
    )


# -- the account's field ----------------------------------------------------------------------------
def test_without_retention_days_the_account_keeps_the_stacks_default():
    assert account().recordings.retention_days is None
    assert recording_key("demo", "C-1", LINK, None) == "demo/C-1/recording.mp3"  # the layout of old


@pytest.mark.parametrize("days", retention.TIERS)
def test_every_tier_is_accepted_and_stored_under_its_prefix(days):
    assert account(retention_days=days).recordings.retention_days == days
    assert recording_key("demo", "a/b", LINK, days) == f"_retention/{days}d/demo/a%2Fb/recording.mp3"


@pytest.mark.parametrize(
    ("days", "hint"),
    [
        (400, "choose 365 or 730"),
        (1, "choose 30;"),
        (0, "choose 30;"),
        (-30, "choose 30;"),
        (5000, "choose 3650;"),
    ],
)
def test_a_value_that_is_no_tier_is_refused_naming_the_nearest_tiers(days, hint):
    with pytest.raises(ValidationError) as caught:
        account(retention_days=days)
    [error] = caught.value.errors()
    assert error["loc"] == ("recordings", "retention_days")
    assert f"{days} days is not a retention tier: {hint}" in error["msg"]
    assert "the tiers are 30, 90, 180, 365, 730, 1095, 1825, 2555, 3650 days" in error["msg"]


def test_a_retention_that_is_no_whole_number_is_refused():
    for value in ("a year", 365.5):
        with pytest.raises(ValidationError):
            account(retention_days=value)


def test_the_retention_is_stored_with_the_account():
    config = account(retention_days=730)
    assert config.public()["recordings"]["retention_days"] == 730
    assert AccountConfig.from_stored("demo", config.public()).recordings.retention_days == 730


def test_the_erasure_looks_under_every_layout_a_recording_may_have():
    prefixes = call_prefixes("demo", "a/b")
    for days in (None, *retention.TIERS):
        assert any(recording_key("demo", "a/b", LINK, days).startswith(p) for p in prefixes)


# -- the lifecycle --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_rules() -> list[dict[str, Any]]:
    return lifecycle_rules()


@pytest.mark.parametrize("days", retention.TIERS)
def test_a_tiers_recording_is_deleted_after_exactly_its_days_by_one_rule(default_rules, days):
    key = recording_key("demo", "C-1", LINK, days)
    found = fate(key, default_rules)
    assert found.expiring_rules == (f"Retain{days}Days",)
    assert found.expires_after == days


@pytest.mark.parametrize("days", retention.TIERS)
def test_a_tier_moves_to_glacier_ir_only_when_it_then_stays_its_minimum(default_rules, days):
    found = fate(recording_key("demo", "C-1", LINK, days), default_rules)
    if days >= 30 + retention.GLACIER_IR_MINIMUM_DAYS:
        assert (found.transition_after, found.storage_class) == (30, "GLACIER_IR")
    else:
        assert found.transition_after is None  # 30 and 90 days: the minimum charge would cost more


@pytest.mark.parametrize("first", sorted(c for c in string.printable if ACCOUNT_ID.match(c)))
def test_the_old_layout_is_deleted_by_the_default_rule_for_every_account_id(default_rules, first):
    """Recordings stored before the tiers ({account}/{call}/…) and those of accounts without
    retention_days: RecordingRetentionDays (365 by default), moved after RecordingsTransitionDays."""
    found = fate(f"{first}x/C-1/recording.mp3", default_rules)
    assert found.expiring_rules == (f"RetainDefault-{first}",)
    assert (found.expires_after, found.transition_after, found.storage_class) == (365, 30, "GLACIER_IR")


def test_no_account_id_begins_like_a_tier():
    assert not ACCOUNT_ID.match(retention.TIER_ROOT[0])


@pytest.mark.parametrize(
    ("retention_days", "transition"),
    [("30", None), ("90", None), ("179", None), ("180", 30), ("400", None), ("730", 30), ("3650", 30)],
)
def test_the_default_rule_follows_the_parameters(retention_days, transition):
    found = fate("demo/C-1/recording.wav", lifecycle_rules({"RecordingRetentionDays": retention_days}))
    assert found.expires_after == int(retention_days)
    assert found.transition_after == transition


def test_transition_days_zero_keeps_every_recording_in_standard():
    rules = lifecycle_rules({"RecordingsTransitionDays": "0"})
    assert not [r["Id"] for r in rules if r.get("Transitions")]
    assert fate("demo/C-1/recording.mp3", rules).expires_after == 365


@pytest.mark.parametrize("transition", ["1", "30", "90"])
@pytest.mark.parametrize("retention_days", ["1", "180", "365", "3650"])
def test_every_transition_comes_before_the_expiration_with_the_minimum_stay(retention_days, transition):
    """S3 refuses a transition that is not before its expiration; Glacier IR bills 90 days at least."""
    rules = lifecycle_rules({"RecordingRetentionDays": retention_days, "RecordingsTransitionDays": transition})
    for rule in rules:
        for step in rule.get("Transitions") or []:
            assert step["StorageClass"] == "GLACIER_IR"
            stay = int(rule["ExpirationInDays"]) - int(step["TransitionInDays"])
            assert stay >= retention.GLACIER_IR_MINIMUM_DAYS, rule["Id"]


def test_the_transition_parameter_cannot_break_the_minimum_stay_of_a_moving_tier():
    parameter = load_template(TEMPLATE).parameters["RecordingsTransitionDays"]
    moving = [d for d in retention.TIERS if d >= 180]
    assert parameter.max_value is not None
    assert parameter.max_value + retention.GLACIER_IR_MINIMUM_DAYS <= min(moving)


def test_the_template_has_one_rule_per_tier_and_nothing_more(default_rules):
    tiers = {
        r["Prefix"]: int(r["ExpirationInDays"])
        for r in default_rules
        if r["Id"].startswith("Retain") and r["Prefix"].startswith(retention.TIER_ROOT)
    }
    assert tiers == {retention.tier_prefix(d): d for d in retention.TIERS}
