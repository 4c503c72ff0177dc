"""Click-to-call: a CRM's make-call request and POST /v1/{account}/calls (callbridge.edge.clicktocall)."""

from typing import Any

from callbridge.edge.clicktocall import make_call_app
from callbridge.infra.observability import invocation

app = make_call_app()


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
