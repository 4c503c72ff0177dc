"""Routing for the JSON and static APIs behind API Gateway's HTTP API (payload format 2.0): a route by
method and path pattern (`/v1/<account>/calls/<callid>`), the request's parts the edge reads, the
exception → answer mapping of each API, and the response in the shape API Gateway takes.

Why not Powertools' event handler, which these APIs used before: importing it costs about a fifth
of a bare boto3 function's whole cold start (bench/benchmark.py), for the few lines of routing
used here. Its behaviour is kept where a client can see it: the same path parameter syntax and
characters, static routes before patterns, an exception handled by the nearest handler of its
class hierarchy, a JSON body written compactly, a bytes body base64-encoded, and the same default
404. tests/unit/test_router.py holds it to Powertools' answers.
"""

from __future__ import annotations

import base64
import contextvars
import dataclasses
import decimal
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

JSON = "application/json"
_T = TypeVar("_T")
_E = TypeVar("_E", bound=Exception)
# What a path parameter may hold (Powertools' set: RFC 3986's unreserved and sub-delimiters, '%'
# since API Gateway passes the path still percent-encoded, and a few it lets through unencoded).
_SEGMENT = r"[-._~()'!*:@,;=+&$%<> \[\]{}|^\w]+"
_PLACEHOLDER = re.compile(r"<(\w+)>")


class Response(Generic[_T]):
    """One answer: a JSON content type writes a body that is not text as JSON; bytes go base64."""

    def __init__(
        self,
        status_code: int,
        content_type: str | None = None,
        body: _T | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.headers: dict[str, str] = dict(headers) if headers else {}
        if content_type:
            self.headers.setdefault("Content-Type", content_type)


class Request:
    """The parts of an HTTP API (2.0) event the edge reads. Header names are lower case (API Gateway
    sends them so; a local gateway may not)."""

    def __init__(self, event: Mapping[str, Any]) -> None:
        self.event = event
        headers = event.get("headers") or {}
        self.headers: dict[str, str] = {str(k).lower(): v for k, v in headers.items()}
        self.query_string_parameters: dict[str, str] = event.get("queryStringParameters") or {}
        context = event.get("requestContext") or {}
        http = context.get("http") or {}
        self.method = str(http.get("method") or "").upper()
        self.source_ip = str(http.get("sourceIp") or "")
        self.domain_name: str | None = context.get("domainName")
        self.stage = str(context.get("stage") or "$default")
        raw_path = str(event.get("rawPath") or "")
        # A named stage prefixes the raw path; routes are written without it.
        self.path = raw_path if self.stage == "$default" else raw_path[len("/" + self.stage) :]

    @property
    def body(self) -> str | None:
        body = self.event.get("body")
        return None if body is None else str(body)

    @property
    def is_base64_encoded(self) -> bool:
        return bool(self.event.get("isBase64Encoded"))

    def query(self, name: str, default: str | None = None) -> str | None:
        return self.query_string_parameters.get(name, default)


_Handler = Callable[..., Response[Any]]
_ErrorHandler = Callable[[Any], Response[Any]]


class NotFound(Exception):
    """No route for the request's method and path: answered by the handler given to `not_found`."""


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[str, bool, re.Pattern[str], _Handler]] = []
        self._errors: dict[type[Exception], _ErrorHandler] = {}
        # Per request, not per router: the local runtime serves requests on several threads.
        self._current: contextvars.ContextVar[Request] = contextvars.ContextVar("callbridge_request")

    @property
    def current_event(self) -> Request:
        return self._current.get()

    def route(self, method: str, rule: str) -> Callable[[_Handler], _Handler]:
        pattern = re.compile("^" + _PLACEHOLDER.sub(lambda m: f"(?P<{m[1]}>{_SEGMENT})", rule) + "$")

        def register(func: _Handler) -> _Handler:
            self._routes.append((method.upper(), "<" in rule, pattern, func))
            # Routes without parameters are tried first, as Powertools does.
            self._routes.sort(key=lambda r: r[1])
            return func

        return register

    def get(self, rule: str) -> Callable[[_Handler], _Handler]:
        return self.route("GET", rule)

    def post(self, rule: str) -> Callable[[_Handler], _Handler]:
        return self.route("POST", rule)

    def exception_handler(self, exc_class: type[_E]) -> Callable[[Callable[[_E], Response[Any]]], Any]:
        def register(func: Callable[[_E], Response[Any]]) -> Callable[[_E], Response[Any]]:
            self._errors[exc_class] = func
            return func

        return register

    def not_found(self, func: Callable[[Exception], Response[Any]]) -> Callable[[Exception], Response[Any]]:
        self._errors[NotFound] = func
        return func

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        request = Request(event)
        token = self._current.set(request)
        try:
            return _build(self._answer(request))
        finally:
            self._current.reset(token)

    def _answer(self, request: Request) -> Response[Any]:
        try:
            for method, _, pattern, func in self._routes:
                if method == request.method and (match := pattern.match(request.path)):
                    return func(**match.groupdict())
            raise NotFound(request.path)
        except Exception as error:
            handler = next((self._errors[c] for c in type(error).__mro__ if c in self._errors), None)
            if handler is not None:
                return handler(error)
            if isinstance(error, NotFound):
                return Response(404, JSON, {"statusCode": 404, "message": "Not found"})
            raise


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return math.nan if value.is_nan() else str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _build(response: Response[Any]) -> dict[str, Any]:
    body: Any = response.body
    if response.headers.get("Content-Type", "").startswith(JSON) and not isinstance(body, str):
        body = json.dumps(body, separators=(",", ":"), default=_json_default)
    encoded = isinstance(body, bytes)
    if encoded:
        body = base64.b64encode(body).decode()
    return {
        "statusCode": response.status_code,
        "body": body,
        "isBase64Encoded": encoded,
        "headers": dict(response.headers),
        "cookies": [],
    }
