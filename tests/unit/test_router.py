"""edge/router.py answers what Powertools' APIGatewayHttpResolver, which the APIs used before, answers
for the same routes and requests: the same app is built on both and each request's answer compared."""

from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler import Response as PowertoolsResponse

from callbridge.edge.router import JSON, Response, Router


class Refused(Exception):
    pass


class RefusedHarder(Refused):
    pass


def _build(app: Any, response: Callable[..., Any], *, with_handlers: bool) -> Any:
    def health() -> Any:
        return response(200, JSON, {"status": "ok", "price": decimal.Decimal("1.50")})

    def calls(account: str) -> Any:
        event = app.current_event
        return response(200, JSON, {"account": account, "q": event.query_string_parameters}, headers={"X-A": "1"})

    def call(account: str, callid: str) -> Any:
        if callid == "refused":
            raise RefusedHarder("no")
        if callid == "boom":
            raise RuntimeError("boom")
        if callid == "audio":
            return response(200, "audio/mpeg", b"\x00\xffID3")
        if callid == "moved":
            return response(302, None, "", headers={"Location": "https://example.com/x"})
        return response(200, "text/plain; charset=utf-8", f"{account}/{callid}")

    def post_call(account: str) -> Any:
        return response(
            201, JSON, {"body": app.current_event.body, "ct": app.current_event.headers.get("content-type")}
        )

    def refused(error: Refused) -> Any:
        return response(401, JSON, {"error": str(error)}, headers={"WWW-Authenticate": "Bearer"})

    def failed(error: Exception) -> Any:
        return response(503, JSON, {"error": "Temporarily unavailable"})

    def not_found(error: Exception) -> Any:
        return response(404, JSON, {"error": "Not found"})

    # Registered by call: Powertools' decorators are untyped.
    app.get("/health")(health)
    app.get("/v1/<account>/calls")(calls)
    app.get("/v1/<account>/calls/<callid>")(call)
    app.post("/v1/<account>/calls")(post_call)
    if with_handlers:
        app.exception_handler(Refused)(refused)
        app.exception_handler(Exception)(failed)
        app.not_found(not_found)
    return app


def _event(method: str, raw_path: str, *, stage: str = "$default", body: str | None = None) -> dict[str, Any]:
    path, _, query = raw_path.partition("?")
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"content-type": "application/json", "host": "api.example.com"},
        "queryStringParameters": dict(p.split("=", 1) for p in query.split("&")) if query else None,
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10"},
            "requestId": "req",
            "stage": stage,
            "domainName": "api.example.com",
        },
        "body": body,
        "isBase64Encoded": False,
    }


REQUESTS = [
    _event("GET", "/health"),
    _event("GET", "/v1/demo/calls?limit=5&cursor=abc"),
    _event("GET", "/v1/demo/calls/c%2F1:2@x"),
    _event("GET", "/v1/demo/calls/audio"),
    _event("GET", "/v1/demo/calls/moved"),
    _event("GET", "/v1/demo/calls/refused"),
    _event("POST", "/v1/demo/calls", body='{"phone": "1"}'),
    _event("GET", "/v1/demo/calls/a/b"),  # no route: a parameter is one segment
    _event("DELETE", "/v1/demo/calls"),  # a route, not for this method
    _event("GET", "/prod/v1/demo/calls", stage="prod"),  # a named stage prefixes the raw path
]


@pytest.mark.parametrize("with_handlers", [True, False])
@pytest.mark.parametrize(
    "event", REQUESTS, ids=[f"{e['requestContext']['http']['method']} {e['rawPath']}" for e in REQUESTS]
)
def test_answers_as_powertools_does(event: dict[str, Any], with_handlers: bool) -> None:
    if not with_handlers and event["rawPath"].endswith("/refused"):
        pytest.skip("an unhandled exception: see the test below")
    ours = _build(Router(), Response, with_handlers=with_handlers).resolve(event, None)
    theirs = _build(APIGatewayHttpResolver(), PowertoolsResponse, with_handlers=with_handlers).resolve(event, None)
    assert ours == theirs


def test_an_exception_no_handler_takes_is_raised() -> None:
    app = _build(Router(), Response, with_handlers=False)
    with pytest.raises(RefusedHarder):
        app.resolve(_event("GET", "/v1/demo/calls/refused"), None)
    with_handlers = _build(Router(), Response, with_handlers=True)
    assert with_handlers.resolve(_event("GET", "/v1/demo/calls/boom"), None)["statusCode"] == 503
