"""Deployment settings, read from the environment once per cold start and validated.

A frozen dataclass rather than a pydantic model: the contact path imports this module and must not
pay pydantic's import time (see bench/benchmark.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


class SettingsError(RuntimeError):
    """A required setting is missing or malformed: a deployment bug, not a client error."""


@dataclass(frozen=True, slots=True)
class Settings:
    accounts_table: str
    calls_table: str
    contacts_table: str
    ssm_prefix: str
    settle_queue_url: str
    missed_call_settle_seconds: int
    contact_budget_ms: int
    # Recordings (issue 3). Optional, so functions that do not touch recordings start without them.
    recording_queue_url: str = ""
    recordings_bucket: str = ""
    recording_max_bytes: int = 500 * 1024 * 1024
    recording_fetch_timeout_s: int = 90
    recording_max_attempts: int = 5
    recording_retry_base_s: int = 30

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
            recording_queue_url=src.get("RECORDING_QUEUE_URL", "").strip(),
            recordings_bucket=src.get("RECORDINGS_BUCKET", "").strip(),
            recording_max_bytes=integer("RECORDING_MAX_BYTES", 500 * 1024 * 1024, 1024, 5 * 1024**3),
            recording_fetch_timeout_s=integer("RECORDING_FETCH_TIMEOUT_SECONDS", 90, 1, 900),
            recording_max_attempts=integer("RECORDING_MAX_ATTEMPTS", 5, 1, 1000),
            recording_retry_base_s=integer("RECORDING_RETRY_BASE_SECONDS", 30, 0, 3600),
        )


@cache
def get_settings() -> Settings:
    return Settings.from_env()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
