"""The operator console's rules that need no store (callbridge.features.console): what a redelivery
does for each state of a delivery, how secrets are masked, and how the next scheduled run is
counted. The same rules through the local runtime: tests/e2e/test_console_e2e.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from callbridge.features.console import MASK, _decide, _every, masked

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
LOST_BEFORE = NOW - timedelta(minutes=15)  # the default delivery lease


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("item", "action", "result"),
    [
        ({"state": "delivered", "delivered_at": "2026-12-07T11:00:00Z"}, "none", "delivered"),
        ({"state": "not_applicable", "reason": "no client number"}, "none", "not_applicable"),
        ({"state": "failed", "reason": "gave up after 12 tries: 503"}, "send", "would_send"),
        ({"state": "rejected", "reason": "calls[0][phone]: invalid"}, "send", "would_send"),
        ({"state": "pending", "attempts": 3, "dlv_due": "2026-12-07T13:00:00Z#C-1"}, "send", "would_send"),
        # A worker holds it right now: its result is coming, nothing is queued beside it.
        ({"state": "pending", "lease_until": iso(NOW + timedelta(minutes=5))}, "none", "in_progress"),
        # A lease that ran out is no one's: a redelivery may take it.
        ({"state": "pending", "lease_until": iso(NOW - timedelta(minutes=5))}, "send", "would_send"),
        # Asked a moment ago (the first click of a double click): nothing more is queued.
        ({"state": "pending", "redelivery_at": iso(NOW - timedelta(seconds=1))}, "none", "requested"),
        # Asked long ago and never taken (a lost message): it may be asked again.
        ({"state": "pending", "redelivery_at": iso(NOW - timedelta(hours=1))}, "send", "would_send"),
        ({"state": "leased-by-a-future-version"}, "none", "unknown"),
    ],
)
def test_what_a_redelivery_does_for_each_state(item, action, result):
    decided = _decide(item, "minicrm", NOW, LOST_BEFORE)
    assert (decided.action, decided.result) == (action, result), decided
    assert "minicrm" in decided.message
    if action == "send":
        assert "once" in decided.message


def test_a_parked_deliverys_reason_is_said_before_the_click():
    decided = _decide({"state": "failed", "reason": "gave up after 1 tries: HTTP 503"}, "retail", NOW, LOST_BEFORE)
    assert "HTTP 503" in decided.message and decided.state == "failed"


def test_every_secret_looking_value_is_masked_at_any_depth():
    config = {
        "pbx": {"kind": "cloudpbx", "api_url": "https://pbx.example.com", "token": "t0p", "crm_tokens": ["a", "b"]},
        "crms": [{"kind": "retailcrm", "api_key": "k", "client_id": "c", "base_url": "https://x.example"}],
        "recordings": {"basic_auth": {"username": "u", "password": "p"}, "allowed_ips": []},
        "name": "Token Trading LLC",  # a value that looks like a word of a secret is not one
        "webhook_secret": None,  # unset stays unset
    }
    shown = masked(config)
    assert shown["pbx"] == {
        "kind": "cloudpbx",
        "api_url": "https://pbx.example.com",
        "token": MASK,
        "crm_tokens": [MASK, MASK],
    }
    assert shown["crms"][0] == {
        "kind": "retailcrm",
        "api_key": MASK,
        "client_id": MASK,
        "base_url": "https://x.example",
    }
    assert shown["recordings"]["basic_auth"] == {"username": "u", "password": MASK}
    assert shown["name"] == "Token Trading LLC" and shown["webhook_secret"] is None


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(15 minutes)", timedelta(minutes=15)),
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(2 hours)", timedelta(hours=2)),
        ("rate(1 day)", timedelta(days=1)),
        ("cron(0 12 * * ? *)", None),  # no period to count from: the screen shows the expression
        ("", None),
    ],
)
def test_the_next_run_is_counted_from_a_rate(expression, period):
    assert _every(expression) == period
