"""GET /v1/{account}/telediscount/{secret}/incoming and …/finished - the telediscount webhooks."""

from typing import Any

from callbridge.edge.telediscount import handle
from callbridge.infra.observability import invocation


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event)
