"""API Gateway HTTP API semantics without the server: the payload format 2.0 event built from a
request, and the HTTP response built from what the Lambda function returned."""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from callbridge_local.routing import RouteMatch

_TEXT_MEDIA_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded", "application/xml"})


class InvalidLambdaResponse(ValueError):
    """The function's result is not a response API Gateway accepts (it answers 500)."""


@dataclass(frozen=True)
class HttpRequest:
    method: str
    raw_path: str
    raw_query: str
    # As received: original case, original order, duplicates kept.
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    server_port: int
    protocol: str = "HTTP/1.1"

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name]
        return ",".join(values) if values else None


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


def new_request_id() -> str:
    # Same shape as API Gateway's ids (e.g. "JKJaXmPLvHcESHA=").
    return base64.b64encode(secrets.token_bytes(11)).decode("ascii")


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{os.urandom(12).hex()}"


def is_textual(content_type: str | None) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in _TEXT_MEDIA_TYPES or media_type.endswith(("+json", "+xml"))


def _headers(request: HttpRequest) -> tuple[dict[str, str], list[str]]:
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            # Payload 2.0 moves cookies out of the headers into their own list.
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    headers["x-forwarded-port"] = str(request.server_port)
    headers["x-forwarded-proto"] = "http"
    headers.setdefault("x-amzn-trace-id", _trace_id())
    return headers, cookies


def _query_parameters(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        params[name] = f"{params[name]},{value}" if name in params else value
    return params


def build_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    account_id: str,
    request_id: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The event API Gateway sends a Lambda integration with payloadFormatVersion 2.0."""
    now = now or datetime.now(UTC)
    headers, cookies = _headers(request)
    host = headers.get("host", f"127.0.0.1:{request.server_port}")
    domain_name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": match.route.route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = _query_parameters(request.raw_query)
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": match.route.api_id,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": match.route.route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
    event["isBase64Encoded"] = False
    if request.body:
        text: str | None = None
        if is_textual(headers.get("content-type")):
            try:
                text = request.body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
    return event


def json_response(status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> HttpResponse:
    body = json.dumps(payload, separators=(",", ":"), default=str).encode()
    return HttpResponse(status, [("content-type", "application/json"), *headers], body)


def _header_value(name: str, value: Any) -> str:
    text = "true" if value is True else "false" if value is False else str(value)
    if any(c in text for c in "\r\n") or any(c in name for c in "\r\n: "):
        raise InvalidLambdaResponse(f"header {name!r} has an invalid name or value")
    return text


def to_http_response(result: Any) -> HttpResponse:
    """Interpret a function result by the payload format 2.0 rules."""
    if not isinstance(result, dict) or "statusCode" not in result:
        # Without statusCode API Gateway takes the whole result as a JSON body.
        return json_response(200, result)
    raw_status = result["statusCode"]
    if isinstance(raw_status, bool):
        raise InvalidLambdaResponse(f"statusCode {raw_status!r} is not a number")
    try:
        status = int(raw_status)
    except (TypeError, ValueError):
        raise InvalidLambdaResponse(f"statusCode {raw_status!r} is not a number") from None
    if not 100 <= status <= 599:
        raise InvalidLambdaResponse(f"statusCode {status} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    cookies = result.get("cookies") or []
    if not isinstance(single, dict) or not isinstance(multi, dict) or not isinstance(cookies, list):
        raise InvalidLambdaResponse("headers and multiValueHeaders must be objects, cookies a list")
    for name, value in single.items():
        headers.append((str(name), _header_value(str(name), value)))
    for name, values in multi.items():
        for value in values if isinstance(values, list) else [values]:
            headers.append((str(name), _header_value(str(name), value)))
    headers.extend(("set-cookie", _header_value("set-cookie", cookie)) for cookie in cookies)
    body = result.get("body")
    if body is None:
        payload = b""
    elif not isinstance(body, str):
        raise InvalidLambdaResponse(f"body must be a string, got {type(body).__name__}")
    elif result.get("isBase64Encoded") is True:
        try:
            payload = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidLambdaResponse("isBase64Encoded is true but body is not base64") from None
    else:
        payload = body.encode("utf-8")
    return HttpResponse(status, headers, payload)
