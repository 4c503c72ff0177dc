"""API Gateway's CORS, as the local runtime answers it (tools/callbridge_local/cors.py): the Kommo
widget's click (widgets/kommo/script.js) from the manager's browser reaches POST /v1/{account}/calls
only if the stack's CrossOriginCallers lists the amoCRM origin (docs/kommo.md §4)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from callbridge_local.cors import CorsConfig
from callbridge_local.template import TemplateError

from .conftest import TEMPLATE, local_runtime, write_project

AMOCRM = "https://mycompany.amocrm.ru"
OTHER = "https://elsewhere.example.com"
CALLS = "/v1/demo/calls"
# What the browser sends before the widget's fetch: its method and the headers it sets.
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
CLICK = {"Authorization": "Bearer not-a-key", "Content-Type": "application/json"}


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.lower().startswith("access-control-")}


def test_the_stack_with_cross_origin_callers_answers_the_widgets_preflight_and_click():
    with (
        local_runtime(TEMPLATE, params={"CrossOriginCallers": AMOCRM}) as runtime,
        httpx.Client(base_url=runtime.base_url, timeout=30) as client,
    ):
        preflight = client.options(CALLS, headers={"Origin": AMOCRM, **PREFLIGHT})
        assert preflight.status_code == 204
        assert _cors_headers(preflight) == {
            "access-control-allow-origin": AMOCRM,
            "access-control-allow-methods": "POST",
            "access-control-allow-headers": "authorization,content-type",
            "access-control-max-age": "600",
        }
        assert preflight.content == b""

        # Another origin: API Gateway still answers the preflight, with nothing the browser accepts.
        refused = client.options(CALLS, headers={"Origin": OTHER, **PREFLIGHT})
        assert refused.status_code == 204
        assert _cors_headers(refused) == {}

        # The click itself: the function answers (an unknown key), and API Gateway adds the origin,
        # so that the widget can read the error.
        click = client.post(CALLS, headers={"Origin": AMOCRM, **CLICK}, json={"extension": "101", "phone": "+1"})
        assert 400 <= click.status_code < 500
        assert click.headers["access-control-allow-origin"] == AMOCRM
        assert "access-control-allow-origin" not in client.post(CALLS, headers={"Origin": OTHER, **CLICK}).headers


def test_without_cross_origin_callers_there_is_no_cors():
    with (
        local_runtime(TEMPLATE) as runtime,
        httpx.Client(base_url=runtime.base_url, timeout=30) as client,
    ):
        preflight = client.options(CALLS, headers={"Origin": AMOCRM, **PREFLIGHT})
        # Not answered as a preflight: no route takes OPTIONS.
        assert preflight.status_code == 404
        assert _cors_headers(preflight) == {}
        click = client.post(CALLS, headers={"Origin": AMOCRM, **CLICK}, json={"extension": "101", "phone": "+1"})
        assert _cors_headers(click) == {}


HANDLERS = """
def own_cors(event, context):
    # A function that sets CORS itself: API Gateway with a CORS configuration ignores these.
    return {
        "statusCode": 200,
        "headers": {"access-control-allow-origin": "*", "access-control-max-age": "1", "x-kept": "yes"},
        "body": "ok",
    }
"""

PROJECT = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.12
    CodeUri: src/
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      CorsConfiguration:
        AllowOrigins: ["https://app.example.org", "http://*"]
        AllowMethods: [GET, POST]
        AllowHeaders: [x-one]
        ExposeHeaders: [x-kept]
        AllowCredentials: true
  OwnCorsFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.own_cors
      Events: {E: {Type: HttpApi, Properties: {ApiId: !Ref Api, Path: /own, Method: GET}}}
"""


@pytest.fixture(scope="module")
def project_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    project = write_project(tmp_path_factory.mktemp("cors"), PROJECT, HANDLERS)
    with local_runtime(project.template) as runtime, httpx.Client(base_url=runtime.base_url, timeout=10) as client:
        yield client


def test_the_integrations_cors_headers_give_way_to_the_configuration(project_client):
    allowed = project_client.get("/own", headers={"Origin": "https://app.example.org"})
    assert allowed.text == "ok"
    assert allowed.headers["x-kept"] == "yes"
    assert _cors_headers(allowed) == {
        "access-control-allow-origin": "https://app.example.org",
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "x-kept",
    }
    # Not listed, or no Origin: no CORS header, and the function's own are gone too.
    assert _cors_headers(project_client.get("/own", headers={"Origin": "https://other.example.org"})) == {}
    assert _cors_headers(project_client.get("/own")) == {}
    # http://* allows any http origin.
    assert project_client.get("/own", headers={"Origin": "http://localhost:8080"}).headers[
        "access-control-allow-origin"
    ] == ("http://localhost:8080")


def test_a_preflight_is_answered_for_any_path_and_only_with_both_of_its_headers(project_client):
    origin = {"Origin": "https://app.example.org"}
    anywhere = project_client.options("/no/such/route", headers={**origin, "Access-Control-Request-Method": "PUT"})
    assert anywhere.status_code == 204
    assert anywhere.headers["access-control-allow-methods"] == "GET,POST"
    assert anywhere.headers["access-control-allow-headers"] == "x-one"
    assert "access-control-max-age" not in anywhere.headers
    # Without Access-Control-Request-Method (or without Origin) an OPTIONS is routed like any request.
    assert project_client.options("/own", headers=origin).status_code == 404
    assert project_client.options("/own", headers={"Access-Control-Request-Method": "GET"}).status_code == 404


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("*", "must be a mapping"),
        ({"allowOrigins": "https://a.example"}, "allowOrigins must be a list of strings"),
        ({"allowOrigins": ["*"], "maxAge": "soon"}, "maxAge must be a number of seconds"),
        ({"allowOrigins": ["*"], "vary": True}, "vary is not supported"),
    ],
)
def test_a_configuration_it_would_not_honour_is_refused_by_name(value: object, message: str):
    with pytest.raises(TemplateError, match=message):
        CorsConfig.parse(value, "resource Api: Body")


def test_origins_match_exactly_or_by_scheme():
    cors = CorsConfig(allow_origins=("https://Mycompany.amocrm.ru",))
    assert cors.allowed_origin("https://mycompany.amocrm.ru") == "https://mycompany.amocrm.ru"
    assert cors.allowed_origin("http://mycompany.amocrm.ru") is None
    assert cors.allowed_origin("https://mycompany.amocrm.ru.evil.example") is None
    assert cors.allowed_origin(None) is None
    assert CorsConfig(allow_origins=("*",)).allowed_origin("https://x.example") == "*"
    assert CorsConfig(allow_origins=("https://*",)).allowed_origin("https://x.example") == "https://x.example"
    assert CorsConfig(allow_origins=("https://*",)).allowed_origin("http://x.example") is None
