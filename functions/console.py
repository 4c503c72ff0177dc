"""GET /console and GET /console/{asset} - the operator console's page and its scripts
(callbridge.edge.console), static."""

from typing import Any

from callbridge.edge.console import resolve
from callbridge.infra.observability import invocation


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return resolve(event, context)
