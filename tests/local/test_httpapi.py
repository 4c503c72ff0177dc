"""httpapi.py: the payload 2.0 event and the interpretation of function results."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from callbridge_local.httpapi import HttpRequest, InvalidLambdaResponse, build_event, is_textual, to_http_response
from callbridge_local.routing import Route, RouteMatch


def request(**overrides: Any) -> HttpRequest:
    fields: dict[str, Any] = {
        "method": "POST",
        "raw_path": "/v1/acme/cloudpbx",
        "raw_query": "",
        "headers": [("Host", "127.0.0.1:3000"), ("Content-Type", "application/json"), ("User-Agent", "pbx/1")],
        "body": b'{"a": 1}',
        "source_ip": "127.0.0.1",
        "server_port": 3000,
    }
    fields.update(overrides)
    return HttpRequest(**fields)


MATCH = RouteMatch(Route.create("POST", "/v1/{account}/cloudpbx", "F", "abcdef1234"), {"account": "acme"})
NOW = datetime(2020, 3, 12, 19, 3, 58, 123000, tzinfo=UTC)


def test_event_has_the_documented_shape():
    event = build_event(request(), MATCH, account_id="123456789012", request_id="rid=", now=NOW)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v1/{account}/cloudpbx"
    assert (event["rawPath"], event["rawQueryString"]) == ("/v1/acme/cloudpbx", "")
    assert "cookies" not in event and "queryStringParameters" not in event
    assert event["pathParameters"] == {"account": "acme"}
    assert (event["body"], event["isBase64Encoded"]) == ('{"a": 1}', False)
    assert event["requestContext"] == {
        "accountId": "123456789012",
        "apiId": "abcdef1234",
        "domainName": "127.0.0.1",
        "domainPrefix": "127",
        "http": {
            "method": "POST",
            "path": "/v1/acme/cloudpbx",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "pbx/1",
        },
        "requestId": "rid=",
        "routeKey": "POST /v1/{account}/cloudpbx",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1584039838123,
    }
    headers = event["headers"]
    assert headers["content-type"] == "application/json" and headers["host"] == "127.0.0.1:3000"
    assert (headers["x-forwarded-for"], headers["x-forwarded-port"], headers["x-forwarded-proto"]) == (
        "127.0.0.1",
        "3000",
        "http",
    )
    assert headers["x-amzn-trace-id"].startswith("Root=1-")


def test_repeated_headers_and_query_parameters_are_joined_and_cookies_listed():
    event = build_event(
        request(
            raw_query="a=1&a=2&b=x%20y&flag",
            headers=[("X-Tag", "one"), ("x-tag", "two"), ("Cookie", "s=1; t=2"), ("Cookie", "u=3")],
            body=b"",
        ),
        MATCH,
        account_id="1",
        request_id="r",
    )
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y&flag"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y", "flag": ""}
    assert event["headers"]["x-tag"] == "one,two"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["s=1", "t=2", "u=3"]
    assert "body" not in event and event["isBase64Encoded"] is False


@pytest.mark.parametrize(
    ("content_type", "body", "base64_encoded"),
    [
        ("application/x-www-form-urlencoded", b"a=1&b=%D0%B0", False),
        ("text/plain; charset=utf-8", "привет".encode(), False),
        ("application/xml", b"<a/>", False),
        ("application/vnd.api+json", b"{}", False),
        ("text/plain", b"\xff\xfe", True),
        ("application/octet-stream", b"abc", True),
        (None, b"abc", True),
    ],
)
def test_body_is_text_only_for_textual_utf8_content(content_type, body, base64_encoded):
    headers = [("Content-Type", content_type)] if content_type else []
    event = build_event(request(headers=headers, body=body), MATCH, account_id="1", request_id="r")
    assert event["isBase64Encoded"] is base64_encoded
    assert event["body"] == (base64.b64encode(body).decode() if base64_encoded else body.decode())


def test_textual_media_types():
    assert is_textual("Application/JSON; charset=utf-8")
    assert not is_textual("image/png")
    assert not is_textual("")


def test_status_code_responses_use_every_field():
    response = to_http_response(
        {
            "statusCode": 201,
            "headers": {"content-type": "text/plain", "x-n": 5},
            "multiValueHeaders": {"x-multi": ["a", "b"]},
            "cookies": ["s=1; Path=/", "t=2"],
            "body": "created",
        }
    )
    assert response.status == 201 and response.body == b"created"
    assert response.headers == [
        ("content-type", "text/plain"),
        ("x-n", "5"),
        ("x-multi", "a"),
        ("x-multi", "b"),
        ("set-cookie", "s=1; Path=/"),
        ("set-cookie", "t=2"),
    ]
    binary = to_http_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    )
    assert binary.body == b"\x00\x01"
    assert to_http_response({"statusCode": "204"}).body == b""


@pytest.mark.parametrize("result", [{"status": "ok"}, [1, 2], "text", 3, None])
def test_results_without_status_code_become_json_bodies(result):
    response = to_http_response(result)
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    import json

    assert json.loads(response.body) == result


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "abc"},
        {"statusCode": 99},
        {"statusCode": True},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "@@@", "isBase64Encoded": True},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "headers": {"x": "a\r\nInjected: 1"}},
    ],
)
def test_results_api_gateway_rejects(result):
    with pytest.raises(InvalidLambdaResponse):
        to_http_response(result)
