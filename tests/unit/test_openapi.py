"""docs/openapi.yaml documents exactly the HttpApi routes of template.yaml: adding, removing or
renaming a route without updating the reference fails here. So does a status code the code answers
(a literal in the route's edge module) that the route does not document, and a query parameter
documented but read nowhere, or read (get_query_string_value) but not documented."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from callbridge_local.template import Template, load_template

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def test_openapi_routes_equal_the_template_routes():
    document = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method in METHODS
    }
    template = _template()
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


# ---------------------------------------------------------------------------------------------
# Parameters and status codes, read from the code that answers each route
# ---------------------------------------------------------------------------------------------
LAYER = ROOT / "layers" / "common" / "python"
ROUTE_METHODS = {"get", "post", "put", "patch", "delete"}
# A status the analysis below finds for a route, although that route cannot answer it: the
# analysis shares a module's (or app's) error answers among all its routes. Each entry must still
# be found (a stale one fails) and must stay undocumented for its route.
NOT_ANSWERED: dict[tuple[str, str], dict[int, str]] = {
    ("GET", "/v1/{account}/retailcrm/make-call"): {
        415: "only POST /calls has a body (edge/clicktocall.py call_request)",
        422: "only POST /calls has a body (edge/clicktocall.py call_request)",
    },
    ("GET", "/v1/{account}/retailcrm/user-status"): {
        415: "only POST /calls has a body (edge/clicktocall.py call_request)",
        422: "only POST /calls has a body (edge/clicktocall.py call_request)",
    },
    ("GET", "/v1/{account}/calls/{callid}"): {
        400: "only the list reads filters and a cursor (edge/calls.py list_calls)",
    },
    ("POST", "/v1/{account}/cloudpbx/contact"): {
        503: "contact answers 200 {} on our failure, so that the ringing phone still gets an answer",
    },
}


def _document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    return loaded


def _operation_parameters(document: dict[str, Any], operation: dict[str, Any]) -> list[dict[str, Any]]:
    shared = document["components"]["parameters"]
    return [shared[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p for p in operation.get("parameters", [])]


def _module_file(module: str) -> Path | None:
    base = LAYER.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


# Every route walks the modules its edge imports, most of them the same ones: each file is parsed
# once per run (the files do not change while the tests run).
@functools.cache
def _imports(path: Path) -> frozenset[Path]:
    """The callbridge modules a file imports (also inside functions: the lazy imports)."""
    found: set[Path] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("callbridge"):
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("callbridge")]
        found |= {file for file in map(_module_file, names) if file is not None}
    return frozenset(found)


def _edge_module(function_file: Path) -> Path:
    """The edge module a Lambda handler hands its event to (the handler itself when none)."""
    edges = [file for file in _imports(function_file) if file.parent.name == "edge"]
    assert len(edges) <= 1, f"{function_file.name} imports several edge modules: {edges}"
    return edges[0] if edges else function_file


def _walk(node: ast.AST, skip: set[int]) -> Iterator[ast.AST]:
    """ast.walk, without descending into the nodes whose id() is in `skip`."""
    todo = [node]
    while todo:
        current = todo.pop()
        if id(current) in skip:
            continue
        yield current
        todo.extend(ast.iter_child_nodes(current))


def _statuses(nodes: Iterable[ast.AST]) -> set[int]:
    """HTTP status literals: the first argument of a call (Response(404, ...), _response(400, ...))
    or the first element of a tuple ((401, body, headers) in a refusal table)."""
    found: set[int] = set()
    for child in nodes:
        first: ast.expr | None = None
        if isinstance(child, ast.Call) and child.args:
            first = child.args[0]
        elif isinstance(child, ast.Tuple) and child.elts:
            first = child.elts[0]
        if isinstance(first, ast.Constant) and type(first.value) is int and 100 <= first.value <= 599:
            found.add(first.value)
    return found


def _query_reads(nodes: Iterable[ast.AST]) -> set[str]:
    """The query parameters read by name: get_query_string_value("exp")."""
    return {
        str(child.args[0].value)
        for child in nodes
        if isinstance(child, ast.Call)
        and isinstance(child.func, ast.Attribute)
        and child.func.attr == "get_query_string_value"
        and child.args
        and isinstance(child.args[0], ast.Constant)
    }


def _route_of(function: ast.FunctionDef) -> tuple[str, str] | None:
    """(METHOD, pattern) of a function decorated `@app.get("/v1/<account>/...")`."""
    for decorator in function.decorator_list:
        if (
            isinstance(decorator, ast.Call)
            and isinstance(decorator.func, ast.Attribute)
            and decorator.func.attr in ROUTE_METHODS
            and decorator.args
            and isinstance(decorator.args[0], ast.Constant)
        ):
            return decorator.func.attr.upper(), str(decorator.args[0].value)
    return None


def _same_route(pattern: str, path: str) -> bool:
    """A Powertools pattern (`<crm>`, `<call_id>`) matches the template path (`retailcrm`, `{id}`)."""
    pattern_parts, path_parts = pattern.split("/"), path.split("/")
    return len(pattern_parts) == len(path_parts) and all(
        a == b or (a.startswith("<") and bool(b)) for a, b in zip(pattern_parts, path_parts, strict=True)
    )


def _answers(edge: Path, method: str, path: str) -> tuple[set[int], set[str]]:
    """(statuses, query parameters read) of one route: the edge module's code without the other
    routes' functions (`@app.get(...)`): the route's own, its helpers and the error answers its app
    shares. A module without route functions answers all its routes alike."""
    tree = ast.parse(edge.read_text(encoding="utf-8"))
    routes = {
        id(node): route
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and (route := _route_of(node)) is not None
    }
    mine = {key for key, (m, pattern) in routes.items() if m == method and _same_route(pattern, path)}
    assert mine or not routes, f"{edge.name} has no route function for {method} {path}"
    nodes = list(_walk(tree, set(routes) - mine))
    return _statuses(nodes), _query_reads(nodes)


def _strings(files: Iterable[Path]) -> set[str]:
    """The string literals of these files, docstrings left out."""
    found: set[str] = set()
    for file in files:
        found |= _file_strings(file)
    return found


@functools.cache
def _file_strings(file: Path) -> frozenset[str]:
    tree = ast.parse(file.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return frozenset(
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    )


def _readers(edge: Path, path: str) -> set[Path]:
    """Where a route's parameters may be read: its edge module, the callbridge modules it imports
    (transitively), and the PBX or CRM package a path segment names (the registry loads it)."""
    packages = LAYER / "callbridge"
    found: set[Path] = set()
    todo = [edge]
    for segment in path.split("/"):
        for family in ("pbx", "crm"):
            if (packages / family / segment).is_dir():
                todo += sorted((packages / family / segment).glob("*.py"))
    while todo:
        file = todo.pop()
        if file not in found:
            found.add(file)
            todo += sorted(_imports(file))
    return found


@functools.cache
def _template() -> Template:
    """template.yaml as the runtime reads it (through the SAM transform: a second or more), once."""
    return load_template(ROOT / "template.yaml")


def _routes() -> list[tuple[str, str, Path]]:
    template = _template()
    return [
        (event.method.upper(), event.path, ROOT / spec.code_uri / f"{spec.module_name.replace('.', '/')}.py")
        for spec in template.functions.values()
        for event in spec.http_events
        if event.path
    ]


def _pbx_answers(path: str) -> set[int]:
    """The statuses a PBX package answers its webhooks with (edge/webhooks.py serves every PBX and
    names none): its `webhooks` module and the modules of its own package that one imports."""
    parts = path.strip("/").split("/")
    declared = LAYER / "callbridge" / "pbx" / parts[2] / "webhooks.py" if len(parts) > 2 else None
    if declared is None or not declared.is_file():
        return set()
    own = [declared, *(file for file in _imports(declared) if file.parent == declared.parent)]
    return _statuses(node for file in own for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))))


def test_every_status_the_code_answers_is_documented_for_its_route():
    document = _document()
    problems: list[str] = []
    for method, path, function_file in _routes():
        documented = {int(code) for code in document["paths"][path][method.lower()]["responses"]}
        edge = _edge_module(function_file)
        statuses, _ = _answers(edge, method, path)
        if edge.name == "webhooks.py":
            statuses |= _pbx_answers(path)
        exempt = NOT_ANSWERED.get((method, path), {})
        assert set(exempt) <= statuses, f"{method} {path}: NOT_ANSWERED lists {set(exempt) - statuses}, not in the code"
        if missing := statuses - set(exempt) - documented:
            problems.append(f"{method} {path}: the code answers {sorted(missing)}, undocumented")
        if claimed := documented & set(exempt):
            problems.append(f"{method} {path}: documents {sorted(claimed)}, which it cannot answer")
    assert not problems, "\n".join(problems)


def test_every_documented_parameter_is_read_and_every_read_one_documented():
    document = _document()
    problems: list[str] = []
    for method, path, function_file in _routes():
        operation = document["paths"][path][method.lower()]
        parameters = _operation_parameters(document, operation)
        in_path = {p["name"] for p in parameters if p["in"] == "path"}
        if in_path != {part[1:-1] for part in path.split("/") if part.startswith("{")}:
            problems.append(f"{method} {path}: path parameters {sorted(in_path)}")
        edge = _edge_module(function_file)
        query = {p["name"] for p in parameters if p["in"] == "query"}
        if unread := query - _strings(_readers(edge, path)):
            problems.append(f"{method} {path}: documents query {sorted(unread)}, which no code reads")
        if undocumented := _answers(edge, method, path)[1] - query:
            problems.append(f"{method} {path}: reads query {sorted(undocumented)}, undocumented")
    assert not problems, "\n".join(problems)
