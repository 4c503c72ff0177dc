"""POST /v1/{account}/cloudpbx/event - the Cloud PBX `event` command at its own address."""

from typing import Any

from callbridge.edge.webhooks import handle
from callbridge.infra.deadline import within_timeout
from callbridge.infra.observability import invocation


@invocation
@within_timeout
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event)
