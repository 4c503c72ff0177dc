"""Every webhook of a PBX package that declares its routes (core/webhooks.py), through the one
generic edge (edge/webhooks.py), except the Cloud PBX addresses that answer `contact` (cloudpbx.py,
contact.py: reserved concurrency, a lean cold start) and its per-command ones (history.py, event.py:
their own memory size). Today:

- telediscount: GET /v1/{account}/telediscount/{secret}/incoming and …/finished;
- Zadarma / Novofon: POST /v1/{account}/zadarma/{secret} (every NOTIFY_* notification; NOTIFY_START
  is answered with the caller's name and route, so this function also runs the caller lookup) and
  GET on the same address (the cabinet's zd_echo check).

The routes are the template's (template.yaml, PbxWebhookFunction's events)."""

from typing import Any

from callbridge.edge.webhooks import handle
from callbridge.infra.deadline import within_timeout
from callbridge.infra.observability import invocation


@invocation
@within_timeout
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event)
