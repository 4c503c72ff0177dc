"""Deployment settings, read from the environment once per cold start and validated.

A NamedTuple rather than a pydantic model or a dataclass: the contact path imports this module, and
pydantic's import, or a frozen dataclass's generated methods for these many fields (about 4 ms),
would be paid by every cold start of it (bench/benchmark.py).
"""

from __future__ import annotations

import os
from functools import cache
from typing import NamedTuple

# The longest a recording is kept (template.yaml's RecordingRetentionDays MaxValue), and so the
# longest a signed recording URL may live (callbridge.features.recordings.playback.verify_signature).
RECORDING_RETENTION_MAX_DAYS = 3650
# template.yaml's CallRetentionDays: at least a month, so that every retry, reconciliation window and
# redelivery an operator may ask for still finds the call it would otherwise store and send again.
CALL_RETENTION_MIN_DAYS = 30
CALL_RETENTION_MAX_DAYS = 3660


class SettingsError(RuntimeError):
    """A required setting is missing or malformed: a deployment bug, not a client error."""


class Settings(NamedTuple):
    accounts_table: str
    calls_table: str
    contacts_table: str
    ssm_prefix: str
    settle_queue_url: str
    missed_call_settle_seconds: int
    contact_budget_ms: int
    # How long an answered call whose events ended waits for its source's final record before it is
    # recorded from its events (core/record.py settle_call).
    history_quiet_seconds: int = 900
    # A call a phone still seems to ring this long after its last event is settled as missed by the
    # ringing sweep (features/ringing_sweep.py): the stop of a phone was lost. Longer than any
    # queue or hunting group rings without an event.
    max_ringing_seconds: int = 900
    # Recordings. Optional, so functions that do not touch recordings start without them.
    recording_queue_url: str = ""
    recordings_bucket: str = ""
    recording_max_bytes: int = 500 * 1024 * 1024
    recording_fetch_timeout_s: int = 90
    recording_max_attempts: int = 5
    recording_retry_base_s: int = 30
    # CRM delivery. Optional for the same reason.
    delivery_queue_url: str = ""
    # Live call cards travel on a queue of their own, so that no card waits in a batch of calls or
    # holds one back; without it they share the delivery queue (a stack deployed before it existed).
    live_card_queue_url: str = ""
    public_base_url: str = ""  # where CRMs reach our recordings URLs (PUBLIC_BASE_URL, else API_URL)
    delivery_max_attempts: int = 12
    delivery_retry_base_s: int = 60
    delivery_realtime_grace_s: int = 300
    delivery_recording_wait_s: int = 1800
    delivery_lease_s: int = 900
    delivery_chunk: int = 10000
    delivery_http_attempts: int = 3
    delivery_http_timeout_s: int = 10
    recording_link_ttl_s: int = 365 * 86400
    # How long a call, its timeline, its deliveries and a source's non-call records are kept in the
    # Calls table (its TTL, `expires_at`), counted from when each item was first written.
    call_retention_s: int = 400 * 86400
    # Click-to-call and routing. Optional: without the cache table the contact path skips the
    # CRM lookup and answers from the directory alone.
    routing_cache_table: str = ""
    routing_cache_ttl_s: int = 300
    # How long a warm Lambda trusts the account item it read (webhook token digests, the version
    # its credentials in SSM belong to): a removed credential stops working at most this long
    # after the apply (core/accounts.py; docs/deploy.md "Credentials: removal and rotation").
    credential_cache_s: int = 5
    pbx_timeout_s: int = 5
    # telediscount and ccrm.pl as call sources.
    telediscount_reconcile_window_s: int = 3 * 3600
    # How often the reconciliation reads telediscount's whole call list (get_calls without a
    # filter); the runs between ask only about the calls it knows began (pbx/telediscount/reconcile.py).
    telediscount_full_sweep_s: int = 3600
    cloudpbx_reconcile_window_s: int = 3 * 3600
    ccrm_overlap_s: int = 3600
    ccrm_first_lookback_s: int = 3600
    ccrm_rate_limit_retries: int = 3
    ccrm_backoff_s: float = 2.0
    # The operator console's health screen: each PBX kind's scheduled job and its schedule
    # (JOB_SCHEDULES, "kind=rate(15 minutes);..."), and the dead-letter queue of deliveries.
    job_schedules: tuple[tuple[str, str], ...] = ()
    delivery_dlq_url: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        src = os.environ if env is None else env

        def required(name: str) -> str:
            value = src.get(name, "").strip()
            if not value:
                raise SettingsError(f"environment variable {name} is not set")
            return value

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = src.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
            if not low <= value <= high:
                raise SettingsError(f"{name} must be within {low}..{high}, got {value}")
            return value

        return cls(
            accounts_table=required("ACCOUNTS_TABLE"),
            calls_table=required("CALLS_TABLE"),
            contacts_table=required("CONTACTS_TABLE"),
            ssm_prefix=required("SSM_PREFIX").rstrip("/"),
            settle_queue_url=src.get("SETTLE_QUEUE_URL", "").strip(),
            missed_call_settle_seconds=integer("MISSED_CALL_SETTLE_SECONDS", 30, 0, 900),
            contact_budget_ms=integer("CONTACT_BUDGET_MS", 1000, 100, 5000),
            history_quiet_seconds=integer("HISTORY_QUIET_SECONDS", 900, 1, 86400),
            max_ringing_seconds=integer("MAX_RINGING_SECONDS", 900, 60, 86400),
            recording_queue_url=src.get("RECORDING_QUEUE_URL", "").strip(),
            recordings_bucket=src.get("RECORDINGS_BUCKET", "").strip(),
            recording_max_bytes=integer("RECORDING_MAX_BYTES", 500 * 1024 * 1024, 1024, 5 * 1024**3),
            recording_fetch_timeout_s=integer("RECORDING_FETCH_TIMEOUT_SECONDS", 90, 1, 900),
            recording_max_attempts=integer("RECORDING_MAX_ATTEMPTS", 5, 1, 1000),
            recording_retry_base_s=integer("RECORDING_RETRY_BASE_SECONDS", 30, 0, 3600),
            delivery_queue_url=src.get("DELIVERY_QUEUE_URL", "").strip(),
            live_card_queue_url=src.get("LIVE_CARD_QUEUE_URL", "").strip(),
            public_base_url=(src.get("PUBLIC_BASE_URL", "").strip() or src.get("API_URL", "").strip()).rstrip("/"),
            delivery_max_attempts=integer("DELIVERY_MAX_ATTEMPTS", 12, 1, 1000),
            delivery_retry_base_s=integer("DELIVERY_RETRY_BASE_SECONDS", 60, 0, 3600),
            delivery_realtime_grace_s=integer("DELIVERY_REALTIME_GRACE_SECONDS", 300, 0, 86400),
            delivery_recording_wait_s=integer("DELIVERY_RECORDING_WAIT_SECONDS", 1800, 0, 86400),
            delivery_lease_s=integer("DELIVERY_LEASE_SECONDS", 900, 10, 3600),
            delivery_chunk=integer("DELIVERY_CHUNK", 10000, 1, 100000),
            delivery_http_attempts=integer("DELIVERY_HTTP_ATTEMPTS", 3, 1, 10),
            delivery_http_timeout_s=integer("DELIVERY_HTTP_TIMEOUT_SECONDS", 10, 1, 60),
            recording_link_ttl_s=integer("RECORDING_RETENTION_DAYS", 365, 1, RECORDING_RETENTION_MAX_DAYS) * 86400,
            call_retention_s=integer("CALL_RETENTION_DAYS", 400, CALL_RETENTION_MIN_DAYS, CALL_RETENTION_MAX_DAYS)
            * 86400,
            routing_cache_table=src.get("ROUTING_CACHE_TABLE", "").strip(),
            routing_cache_ttl_s=integer("ROUTING_CACHE_TTL_SECONDS", 300, 1, 86400),
            credential_cache_s=integer("CREDENTIAL_CACHE_SECONDS", 5, 1, 300),
            pbx_timeout_s=integer("PBX_TIMEOUT_SECONDS", 5, 1, 25),
            telediscount_reconcile_window_s=integer("TELEDISCOUNT_RECONCILE_WINDOW_MINUTES", 180, 5, 10080) * 60,
            telediscount_full_sweep_s=integer("TELEDISCOUNT_FULL_SWEEP_MINUTES", 60, 0, 10080) * 60,
            cloudpbx_reconcile_window_s=integer("CLOUDPBX_RECONCILE_WINDOW_MINUTES", 180, 5, 10080) * 60,
            ccrm_overlap_s=integer("CCRM_OVERLAP_MINUTES", 60, 0, 10080) * 60,
            ccrm_first_lookback_s=integer("CCRM_FIRST_LOOKBACK_MINUTES", 60, 1, 525600) * 60,
            ccrm_rate_limit_retries=integer("CCRM_RATE_LIMIT_RETRIES", 3, 0, 10),
            ccrm_backoff_s=integer("CCRM_BACKOFF_MILLISECONDS", 2000, 0, 60000) / 1000,
            job_schedules=_pairs(src.get("JOB_SCHEDULES", "")),
            delivery_dlq_url=src.get("DELIVERY_DLQ_URL", "").strip(),
        )


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    """`a=x;b=y` as (("a", "x"), ("b", "y")); an entry without "=" or a name is a deployment bug."""
    pairs: list[tuple[str, str]] = []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        name, equals, value = entry.partition("=")
        if not equals or not name.strip():
            raise SettingsError(f"JOB_SCHEDULES: {entry!r} is not kind=schedule")
        pairs.append((name.strip(), value.strip()))
    return tuple(pairs)


@cache
def get_settings() -> Settings:
    return Settings.from_env()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
