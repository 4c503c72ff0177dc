"""The PBX webhook routes of template.yaml and the routes the PBX packages declare
(pbx/<kind>/webhooks.py, served by edge/webhooks.py) are the same: a route in the template that no
package declares would answer every request as our failure, and a declared one the template lacks
would never be reached. Also what the edge answers for a path it cannot serve."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from callbridge import registry
from callbridge.edge.webhooks import handle
from callbridge_local.template import Template, load_template

ROOT = Path(__file__).resolve().parents[2]
EDGE = "callbridge.edge.webhooks"


@functools.cache
def _template() -> Template:
    return load_template(ROOT / "template.yaml")


def _webhook_routes() -> set[tuple[str, str]]:
    """(METHOD, path) of every route whose function hands its event to edge/webhooks.py."""
    routes: set[tuple[str, str]] = set()
    for spec in _template().functions.values():
        source = (ROOT / spec.code_uri / f"{spec.module_name.replace('.', '/')}.py").read_text(encoding="utf-8")
        if EDGE in source:
            routes |= {(event.method.upper(), event.path) for event in spec.http_events if event.path}
    return routes


def _declared_routes() -> set[tuple[str, str]]:
    routes: set[tuple[str, str]] = set()
    for kind in registry.PBX:
        declared = registry.pbx_webhooks(kind)
        if declared is not None:
            assert declared.kind == kind
            base = f"/v1/{{account}}/{kind}"
            routes |= {(r.method, f"{base}/{r.path}" if r.path else base) for r in declared.routes}
    return routes


def test_the_template_routes_exactly_what_the_packages_declare() -> None:
    routed = _webhook_routes()
    assert {"cloudpbx", "telediscount"} <= {path.split("/")[3] for _, path in routed}
    assert routed == _declared_routes()


def test_a_pbx_without_webhooks_declares_none() -> None:
    assert registry.pbx_webhooks("ccrm") is None


def _event(path: str, route_key: str | None = None) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": route_key or f"GET {path}",
        "rawPath": path,
        "pathParameters": {"account": "demo"},
        "requestContext": {"http": {"method": "GET", "path": path}},
        "isBase64Encoded": False,
    }


def _answer(event: dict[str, Any]) -> tuple[int, Any]:
    response = handle(event)
    return response["statusCode"], json.loads(response["body"]) if response["body"] else None


def test_a_path_the_pbx_does_not_have_gets_its_refusal_before_any_account_is_read() -> None:
    # No AWS here: an account read would fail, and be answered 503.
    assert _answer(_event("/v1/demo/telediscount/secret/ringing", "$default")) == (404, {"error": "Not found"})
    assert _answer(_event("/v1/demo/cloudpbx/rating", "$default")) == (401, {"error": "Invalid token"})


def test_a_path_no_package_serves_is_our_failure_not_the_callers() -> None:
    unavailable = (503, {"error": "Temporarily unavailable"})
    assert _answer(_event("/v1/demo/ccrm/history", "$default")) == unavailable
    assert _answer(_event("/v1/demo/nosuchpbx/history", "$default")) == unavailable
