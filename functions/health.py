"""GET /health - answers while the API and its function runtime are up."""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from callbridge.infra.observability import invocation

app = APIGatewayHttpResolver()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
