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
        )


@cache
def get_settings() -> Settings:
    return Settings.from_env()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
