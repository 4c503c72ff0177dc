"""gateway.py: real HTTP requests through the in-process runtime to tiny handlers of a tmp template."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from callbridge_local.gateway import MAX_BODY_BYTES, Gateway
from callbridge_local.handlers import FunctionRegistry
from callbridge_local.routing import RouteTable
from callbridge_local.runtime import LocalRuntime

from .conftest import local_runtime, write_project

HANDLERS = """
import base64
import json
import os
import time


def echo(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(event),
    }


def plain(event, context):
    return {"hello": "world"}


def boom(event, context):
    raise RuntimeError("kaboom")


def binary(event, context):
    body = base64.b64encode(b"\\x89PNG\\x00\\xff").decode()
    return {"statusCode": 200, "headers": {"content-type": "image/png"}, "body": body, "isBase64Encoded": True}


def bad(event, context):
    return {"statusCode": 200, "body": {"not": "a string"}}


CURRENT = {}


def stateful(event, context):
    # Keeps the event in module state while it works, as a Powertools resolver does.
    CURRENT["event"] = event
    time.sleep(0.3)
    return {"path": CURRENT["event"]["rawPath"]}


def env(event, context):
    return {
        "table": os.environ["TABLE"],
        "endpoint": os.environ["AWS_ENDPOINT_URL"],
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "request_id": context.aws_request_id,
        "log_group": context.log_group_name,
        "remaining": context.get_remaining_time_in_millis(),
    }
"""

TEMPLATE = """
Globals:
  Function:
    CodeUri: src/
    Runtime: python3.12
    Timeout: 5
    Environment:
      Variables:
        TABLE: !Ref Table
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.echo
      MemorySize: 256
      Events:
        Hook: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/v1/{account}/hook", Method: POST}}
        Files: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/files/{proxy+}", Method: ANY}}
        Get: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /echo, Method: GET}}
  PlainFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.plain
      Events: {E: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /plain, Method: GET}}}
  BoomFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.boom
      Events: {E: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /boom, Method: GET}}}
  BinaryFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.binary
      Events: {E: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /binary, Method: GET}}}
  BadFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.bad
      Events: {E: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /bad, Method: GET}}}
  StatefulFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.stateful
      Events: {E: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: "/stateful/{n}", Method: GET}}}
  EnvFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.env
      Events: {E: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /env, Method: GET}}}
"""


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntime]:
    project = write_project(tmp_path_factory.mktemp("gateway"), TEMPLATE, HANDLERS)
    with local_runtime(project.template) as running:
        yield running


@pytest.fixture(scope="module")
def client(runtime: LocalRuntime) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=runtime.base_url, timeout=10) as http:
        yield http


def test_form_post_arrives_as_api_gateway_builds_it(runtime, client):
    response = client.post(
        "/v1/acme%20co/hook?cmd=history&tag=a&tag=b&empty=",
        content="phone=%2B79101234567&user=andy",
        headers=[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Repeated", "one"),
            ("X-Repeated", "two"),
            ("Cookie", "session=abc; theme=dark"),
        ],
    )
    assert response.status_code == 200, response.text
    assert response.headers["apigw-requestid"]
    event = response.json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v1/{account}/hook"
    assert event["rawPath"] == "/v1/acme%20co/hook"
    assert event["rawQueryString"] == "cmd=history&tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"cmd": "history", "tag": "a,b", "empty": ""}
    assert event["pathParameters"] == {"account": "acme co"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert event["body"] == "phone=%2B79101234567&user=andy"
    assert event["isBase64Encoded"] is False
    headers = event["headers"]
    assert headers["x-repeated"] == "one,two"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["content-length"] == "30"
    assert all(name == name.lower() for name in headers)
    context = event["requestContext"]
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/v1/acme%20co/hook"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["http"]["userAgent"].startswith("python-httpx/")
    assert context["apiId"] == runtime.stack.api_id("Api")
    assert (context["stage"], context["routeKey"], context["accountId"]) == (
        "$default",
        "POST /v1/{account}/hook",
        "123456789012",
    )
    assert context["requestId"] == response.headers["apigw-requestid"]
    assert isinstance(context["timeEpoch"], int) and context["time"].endswith("+0000")


def test_binary_body_is_base64_and_greedy_any_route_gets_the_rest_of_the_path(client):
    payload = bytes(range(256))
    response = client.put("/files/a/b%20c.bin", content=payload, headers={"content-type": "application/octet-stream"})
    event = response.json()
    assert event["routeKey"] == "ANY /files/{proxy+}"
    assert event["pathParameters"] == {"proxy": "a/b c.bin"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    assert "queryStringParameters" not in event and "cookies" not in event


def test_chunked_request_bodies_are_read(runtime):
    host, port = urlsplit(runtime.base_url).hostname, urlsplit(runtime.base_url).port
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request(
            "POST",
            "/v1/x/hook",
            body=iter([b"a=1", b"&b=2"]),
            headers={"content-type": "text/plain"},
            encode_chunked=True,
        )
        event = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    assert event["body"] == "a=1&b=2"


def test_results_are_converted_by_the_payload_2_rules(client):
    plain = client.get("/plain")
    assert (plain.status_code, plain.headers["content-type"], plain.json()) == (
        200,
        "application/json",
        {"hello": "world"},
    )
    binary = client.get("/binary")
    assert (binary.status_code, binary.headers["content-type"], binary.content) == (
        200,
        "image/png",
        b"\x89PNG\x00\xff",
    )
    bad = client.get("/bad")
    assert (bad.status_code, bad.json()) == (500, {"message": "Internal Server Error"})


def test_unknown_routes_and_other_methods_are_not_found(client):
    for method, path in [("GET", "/nowhere"), ("GET", "/v1/acme/hook"), ("DELETE", "/plain"), ("GET", "/_local/nope")]:
        response = client.request(method, path)
        assert (response.status_code, response.json()) == (404, {"message": "Not Found"}), (method, path)


def test_a_failing_handler_is_a_500_with_the_traceback_logged(client, caplog):
    with caplog.at_level(logging.ERROR, logger="callbridge_local"):
        response = client.get("/boom")
        assert (response.status_code, response.json()) == (500, {"message": "Internal Server Error"})
    [record] = [r for r in caplog.records if "BoomFunction failed" in r.getMessage()]
    assert record.exc_info and "kaboom" in str(record.exc_info[1])
    # The server goes on serving.
    assert client.get("/plain").status_code == 200


def test_handlers_see_the_function_env_and_a_lambda_context(runtime, client):
    first, second = client.get("/env").json(), client.get("/env").json()
    stack = runtime.stack.stack_name
    assert first["table"] == f"{stack}-Table"
    assert first["endpoint"] == runtime.aws_endpoint
    assert first["function_name"] == f"{stack}-EnvFunction"
    assert first["arn"] == f"arn:aws:lambda:us-east-1:123456789012:function:{stack}-EnvFunction"
    assert first["log_group"] == f"/aws/lambda/{stack}-EnvFunction"
    assert first["memory"] == 128
    assert 4000 < first["remaining"] <= 5000
    assert first["request_id"] != second["request_id"]


def test_concurrent_invocations_of_a_function_run_in_separate_instances(runtime):
    # Lambda never runs two invocations in one execution environment at once; handlers that keep
    # the current event in module state rely on it.
    paths = [f"/stateful/{n}" for n in range(6)]
    answers: dict[str, str] = {}

    def call(path: str) -> None:
        with httpx.Client(base_url=runtime.base_url, timeout=10) as http:
            answers[path] = http.get(path).json()["path"]

    threads = [threading.Thread(target=call, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {path: path for path in paths}
    assert 2 <= runtime.functions["StatefulFunction"].instances <= len(paths)

    # Warm instances are reused: a second wave starts no new ones when they suffice.
    started = runtime.functions["StatefulFunction"].instances
    answers.clear()
    threads = [threading.Thread(target=call, args=(path,)) for path in paths[:2]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {path: path for path in paths[:2]}
    assert runtime.functions["StatefulFunction"].instances == started


def test_head_answers_headers_of_the_get_route_without_a_body(client):
    get = client.get("/echo")
    head = client.head("/echo")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert get.json()["requestContext"]["http"]["method"] == "GET"


def test_keep_alive_serves_several_requests_on_one_connection(runtime):
    port = urlsplit(runtime.base_url).port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/plain")
        first = connection.getresponse()
        assert (first.status, first.read()) == (200, b'{"hello":"world"}')
        sock = connection.sock
        connection.request("GET", "/plain")
        second = connection.getresponse()
        assert second.status == 200 and second.read()
        assert connection.sock is sock
        # Without TCP_NODELAY every keep-alive response waits ~40 ms for a delayed ACK.
        started = time.monotonic()
        for _ in range(20):
            connection.request("GET", "/plain")
            connection.getresponse().read()
        assert time.monotonic() - started < 0.6
    finally:
        connection.close()


def raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_bodies_over_10_mb_are_refused_without_reading_them(runtime):
    port = urlsplit(runtime.base_url).port
    head = f"POST /v1/x/hook HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode()
    answer = raw_exchange(port, head)
    assert answer.startswith(b"HTTP/1.1 413")
    assert answer.endswith(b'{"message":"Request Entity Too Large"}')
    expect = (
        f"POST /v1/x/hook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    )
    assert raw_exchange(port, expect.encode()).startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize(
    "garbage",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /plain HTTP/9.9\r\n\r\n",
        b"POST /v1/x/hook HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        b"POST /v1/x/hook HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
        b"POST /v1/x/hook HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
        b"\x00\xff\xfe" * 100,
        b"",
    ],
)
def test_malformed_requests_get_a_4xx_and_never_stop_the_server(runtime, client, garbage):
    answer = raw_exchange(urlsplit(runtime.base_url).port, garbage)
    if answer:
        status_line = answer.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 4") or status_line.startswith(b"HTTP/1.1 505"), answer[:200]
        assert answer.endswith(b"}") and b'"message"' in answer
    assert client.get("/plain").status_code == 200


def test_local_env_endpoint_tells_where_the_emulated_aws_is(runtime, client):
    info = client.get("/_local/env").json()
    assert info["awsEndpoint"] == runtime.aws_endpoint
    assert info["environment"]["TABLE"] == f"{runtime.stack.stack_name}-Table"
    assert info["aws"]["AWS_ENDPOINT_URL"] == runtime.aws_endpoint
    routes = client.get("/_local/routes").json()
    assert {"routeKey": "GET /plain", "function": "PlainFunction"} in routes


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "LocalHost", "[::1]"])
def test_control_endpoints_answer_loopback_names_with_the_runtime_port(runtime, client, name):
    response = client.get("/_local/routes", headers={"Host": f"{name}:{urlsplit(runtime.base_url).port}"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:{port}", "127.0.0.1", "127.0.0.1:1", "localhost.evil.example:{port}", ""],
    ids=["rebound-name", "rebound-name-with-port", "no-port", "other-port", "suffix", "empty"],
)
def test_control_endpoints_refuse_other_host_names(runtime, client, host):
    """A page on a DNS name rebound to 127.0.0.1 reaches the gateway with its own name in Host."""
    port = urlsplit(runtime.base_url).port
    for method, path in [("GET", "/_local/env"), ("POST", "/_local/queues/drain?timeout=0")]:
        response = client.request(method, path, headers={"Host": host.format(port=port)})
        assert response.status_code == 403, response.text
        assert "loopback" in response.json()["message"]
    # The API itself answers whatever the Host, as API Gateway does.
    assert client.get("/plain", headers={"Host": "evil.example"}).status_code == 200


def test_a_gateway_bound_but_never_served_stops_at_once():
    """Start-up can fail between bind() and serve() (an account file refused while being applied):
    stopping must not wait for a serve loop that never ran."""
    gateway = Gateway(RouteTable([]), FunctionRegistry([]), account_id="123456789012")
    gateway.bind()
    stopper = threading.Thread(target=gateway.stop, daemon=True)
    stopper.start()
    stopper.join(5)
    assert not stopper.is_alive(), "Gateway.stop() hung on a server that was never served"
