"""Scheduled PBX user sync (callbridge.features.users): the PBX's user list (e.g. Cloud PBX `accounts`)
for every account whose PBX lists its users, or for `{"accounts": [...]}` when the event names them
(on demand).

Users the PBX lists but no mapping names are stored for `callbridge users unmapped` and counted in
the metric `UnmappedPbxUsers` (dimension `account`): an operator maps them, nothing guesses.
One account's failure (PBX down, bad token) is reported and does not stop the others.
"""

from typing import Any

from callbridge.features.users import run_sync
from callbridge.infra.observability import invocation


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    named = event.get("accounts") if isinstance(event, dict) else None
    return run_sync([str(a) for a in named] if isinstance(named, list) else None)
