"""GET /v1/{account}/calls and GET /v1/{account}/calls/{callid} - the call history API
(callbridge.edge.calls)."""

from typing import Any

from callbridge.edge.calls import resolve
from callbridge.infra.observability import invocation


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return resolve(event, context)
