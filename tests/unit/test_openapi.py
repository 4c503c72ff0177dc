"""docs/openapi.yaml documents exactly the HttpApi routes of template.yaml: adding, removing or
renaming a route without updating the reference fails here."""

from __future__ import annotations

from pathlib import Path

import yaml

from callbridge_local.template import load_template

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def test_openapi_routes_equal_the_template_routes():
    document = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS
    }
    template = load_template(ROOT / "template.yaml")
    routed = {(event.method.upper(), event.path) for f in template.functions.values() for event in f.http_events}
    assert routed, "no HttpApi routes found in template.yaml"
    assert documented - routed == set(), "documented in docs/openapi.yaml but not routed in template.yaml"
    assert routed - documented == set(), "routed in template.yaml but missing from docs/openapi.yaml"


def test_every_path_parameter_is_declared():
    document = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    shared = document["components"]["parameters"]
    for path, item in document["paths"].items():
        names = set(part[1:-1] for part in path.split("/") if part.startswith("{"))
        for method, operation in item.items():
            declared = {
                (shared[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p)["name"]
                for p in operation.get("parameters", [])
            }
            assert names <= declared, f"{method.upper()} {path}: declare {names - declared}"
