"""GET /v1/{account}/recordings?Rec=… and GET /v1/{account}/recordings/{call id}?exp=…&sig=… (the
MiniCRM and retailCRM playback URLs): callbridge.edge.recordings."""

from typing import Any

from callbridge.edge.recordings import resolve
from callbridge.infra.observability import invocation


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return resolve(event, context)
