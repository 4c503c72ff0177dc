"""The JSON error answers shared by the click-to-call family of HTTP functions (make-call, calls,
user-status), mapped once: a refusal keeps its status, an unknown route is 404, our own failure is a
retryable 503 — never a 500."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from callbridge.features.clicktocall import ClickToCallError
from callbridge.infra.observability import logger

JSON = "application/json"


def install_error_answers(app: APIGatewayHttpResolver, failure: str) -> None:
    """`failure` is the log message of an unexpected error (a store or SSM outage)."""

    def refused(error: ClickToCallError) -> Response[Any]:
        if error.status >= 500:
            logger().warning("the PBX or CRM failed", extra={"status": error.status, "reason": error.message})
        return Response(error.status, JSON, {"error": error.message})

    def failed(error: Exception) -> Response[Any]:
        logger().exception(failure)
        return Response(503, JSON, {"error": "Temporarily unavailable"})

    def not_found(error: Exception) -> Response[Any]:
        return Response(404, JSON, {"error": "Not found"})

    app.exception_handler(ClickToCallError)(refused)
    app.exception_handler(Exception)(failed)
    app.not_found(not_found)
