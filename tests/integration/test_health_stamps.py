"""A CRM's health stamp (store/health.py) against DynamoDB (moto over HTTP): a success is stamped at
most once a minute by one warm function, an error at once, and the first success after an error at
once (the health screen must show the recovery)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callbridge.store import health


@pytest.fixture
def fresh(cloud: dict[str, str]) -> Iterator[None]:
    health._stamped.clear()
    yield
    health._stamped.clear()


def _stamp() -> dict[str, object]:
    crms, _ = health.stamps("demo")
    return crms["minicrm"]


def test_successes_within_a_minute_are_stamped_once_and_errors_at_once(fresh: None) -> None:
    health.crm_result("demo", "minicrm", "2026-12-07T10:00:00Z", success=True)
    health.crm_result("demo", "minicrm", "2026-12-07T10:00:05Z", success=True)
    assert _stamp()["last_success_at"] == "2026-12-07T10:00:00Z"
    health.crm_result("demo", "minicrm", "2026-12-07T10:00:07Z", success=False, error="HTTP 503")
    assert _stamp()["last_error_at"] == "2026-12-07T10:00:07Z"
    health.crm_result("demo", "minicrm", "2026-12-07T10:00:09Z", success=True)
    assert _stamp()["last_success_at"] == "2026-12-07T10:00:09Z"  # the recovery shows at once
    health.crm_result("demo", "minicrm", "2026-12-07T10:00:11Z", success=True)
    assert _stamp()["last_success_at"] == "2026-12-07T10:00:09Z"


def test_a_minute_later_a_success_is_stamped_again(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    health.crm_result("demo", "minicrm", "2026-12-07T10:00:00Z", success=True)
    monkeypatch.setattr(health, "SUCCESS_STAMP_S", 0.0)
    health.crm_result("demo", "minicrm", "2026-12-07T10:01:01Z", success=True)
    assert _stamp()["last_success_at"] == "2026-12-07T10:01:01Z"
