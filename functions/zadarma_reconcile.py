"""Scheduled: Zadarma reconciliation of every Zadarma account (or of the event's `callbridge_account`)."""

from typing import Any

from callbridge.features.schedules import run_scheduled
from callbridge.infra.observability import invocation


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run_scheduled("zadarma", event)
