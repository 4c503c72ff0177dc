"""The API's static answers (callbridge.edge.static): GET /health, and the retailCRM module's logo
and page."""

from typing import Any

from callbridge.edge.static import static_app
from callbridge.infra.observability import invocation

app = static_app()


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
