"""routing.py: API Gateway's route precedence and path parameters."""

from __future__ import annotations

import pytest

from callbridge_local.routing import Route, RouteError, RouteTable


def table(*routes: tuple[str, str | None, str]) -> RouteTable:
    return RouteTable(Route.create(method, path, function, "api0000001") for method, path, function in routes)


ROUTES = table(
    ("ANY", None, "Default"),
    ("ANY", "/v1/{proxy+}", "V1Greedy"),
    ("GET", "/v1/{account}/calls/{proxy+}", "CallsGreedy"),
    ("POST", "/v1/{account}/cloudpbx", "CloudPbx"),
    ("ANY", "/v1/{account}/cloudpbx", "CloudPbxAny"),
    ("POST", "/v1/{account}/cloudpbx/history", "History"),
    ("POST", "/v1/demo/cloudpbx", "DemoExact"),
    ("POST", "/v1/{account}/{service}", "TwoVars"),
    ("GET", "/health", "Health"),
    ("GET", "/", "Root"),
)


@pytest.mark.parametrize(
    ("method", "path", "function", "params"),
    [
        # A path without variables beats one with them.
        ("POST", "/v1/demo/cloudpbx", "DemoExact", {}),
        # A literal segment beats a variable at the same position.
        ("POST", "/v1/acme/cloudpbx", "CloudPbx", {"account": "acme"}),
        ("POST", "/v1/acme/other", "TwoVars", {"account": "acme", "service": "other"}),
        # An explicit method beats ANY on the same path.
        ("PUT", "/v1/acme/cloudpbx", "CloudPbxAny", {"account": "acme"}),
        ("POST", "/v1/acme/cloudpbx/history", "History", {"account": "acme"}),
        # Greedy routes come after every non-greedy one, the longest literal prefix first.
        ("GET", "/v1/acme/calls/2024/01", "CallsGreedy", {"account": "acme", "proxy": "2024/01"}),
        ("GET", "/v1/acme/cloudpbx/history", "V1Greedy", {"proxy": "acme/cloudpbx/history"}),
        ("DELETE", "/v1/x", "V1Greedy", {"proxy": "x"}),
        # Path parameters are URL-decoded; the raw path is matched segment by segment.
        ("POST", "/v1/acme%20co/cloudpbx", "CloudPbx", {"account": "acme co"}),
        ("POST", "/v1/a%2Fb/cloudpbx", "CloudPbx", {"account": "a/b"}),
        ("GET", "/health", "Health", {}),
        ("GET", "/", "Root", {}),
        # Everything else falls to $default.
        ("POST", "/health", "Default", {}),
        ("GET", "/health/", "Default", {}),
        ("GET", "/v1", "Default", {}),
        ("GET", "/v1/", "Default", {}),
    ],
)
def test_the_most_specific_route_wins(method, path, function, params):
    match = ROUTES.match(method, path)
    assert match is not None
    assert (match.route.function_id, match.path_parameters) == (function, params)


def test_route_keys_and_no_route_without_default():
    routes = table(("POST", "/v1/{account}/cloudpbx", "CloudPbx"), ("GET", "/health", "Health"))
    match = routes.match("POST", "/v1/demo/cloudpbx")
    assert match is not None and match.route.route_key == "POST /v1/{account}/cloudpbx"
    # Known path, other method: HTTP APIs answer 404, so no match at all.
    assert routes.match("GET", "/v1/demo/cloudpbx") is None
    assert routes.match("POST", "/health") is None
    assert routes.match("GET", "/v1//cloudpbx") is None
    assert routes.match("GET", "/nowhere") is None
    default = table(("ANY", None, "D")).match("GET", "/x")
    assert default is not None and default.route.route_key == "$default"


@pytest.mark.parametrize("path", ["health", "/a/{proxy+}/b", "/a/{x", "/a/b}c"])
def test_malformed_route_paths_are_rejected(path):
    with pytest.raises(RouteError):
        Route.create("GET", path, "F", "api")


def test_a_route_defined_twice_is_rejected():
    with pytest.raises(RouteError, match="defined by both"):
        table(("GET", "/health", "A"), ("get", "/health", "B"))
