"""Every webhook of a PBX package that declares its routes (core/webhooks.py), except the Cloud PBX
addresses that answer `contact` (cloudpbx.py, contact.py: reserved concurrency, a lean cold start)
and its per-command ones (history.py, event.py: their own memory size). Today the telediscount
webhooks: GET /v1/{account}/telediscount/{secret}/incoming and …/finished."""

from typing import Any

from callbridge.edge.webhooks import handle
from callbridge.infra.deadline import within_timeout
from callbridge.infra.observability import invocation


@invocation
@within_timeout
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event)
