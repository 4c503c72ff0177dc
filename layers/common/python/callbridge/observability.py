"""Structured logging with Powertools, created on first use: the contact path imports this module
but logs only when something goes wrong, so it must not pay the logger's import on cold start."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

# Field names whose values are secrets wherever they appear (PBX and CRM payloads alike).
SECRET_FIELDS = frozenset({"crm_token", "token", "apikey", "api_key", "password", "secret"})


@cache
def logger() -> Logger:
    from aws_lambda_powertools import Logger

    return Logger(service="callbridge")


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of a payload safe to store and log: secret fields are dropped, not masked, so that
    not even their length is kept."""
    return {k: v for k, v in fields.items() if k.lower() not in SECRET_FIELDS}


def bind(**keys: Any) -> None:
    """Attach keys (account, call_id) to every following log line of this invocation. The keys of
    the previous invocation are dropped first: a warm Lambda must not tag one call with another's id."""
    log = logger()
    log.clear_state()
    log.append_keys(**{k: v for k, v in keys.items() if v is not None})
