"""Scheduled: settles as missed every call still ringing past its maximum ringing age (the stop of a
phone was lost): callbridge.features.ringing_sweep. An event with `callbridge_account` sweeps that one."""

from typing import Any

from callbridge.features.ringing_sweep import run
from callbridge.infra.observability import invocation


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return run(event)
