"""GET /v1/{account}/telediscount/{secret}/incoming and …/finished - the telediscount webhooks."""

from typing import Any

from callbridge.edge.telediscount import handle
from callbridge.infra.deadline import within_timeout
from callbridge.infra.observability import invocation


@invocation
@within_timeout
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event)
