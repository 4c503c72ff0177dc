"""GET /v1/{account}/health|users|settings and GET|POST /v1/{account}/calls/{callid}/redeliver/{crm} -
the operator console's API (callbridge.edge.console_api)."""

from typing import Any

from callbridge.edge.console_api import resolve
from callbridge.infra.observability import invocation


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return resolve(event, context)
