"""The imports lint-imports cannot see (pyproject.toml [tool.importlinter] reads import statements).

- A module imported by a name made at run time (`importlib.import_module`, `__import__`): only the
  registry imports the PBX and CRM packages that way (callbridge/registry.py), and of the tools only
  the Lambda loader of the local runtime and the CLI's loader of its own command groups do.
- A PBX or CRM module named by a string (`"callbridge.crm.retailcrm"`, `f"callbridge.pbx.{kind}"`):
  only the registry names them; everything else asks it by kind.
- A Lambda handler importing another one: functions/ is not a package on Lambda (functions/Makefile
  ships each handler alone), so `from history import handler` would work locally and fail there, and
  lint-imports, reading functions/ as a package, takes it for an outside module."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Where each scanned tree is, by the name its files are shown under (as in test_contracts_bite.py).
TREES = {
    "callbridge": ROOT / "layers" / "common" / "python" / "callbridge",
    "functions": ROOT / "functions",
    "callbridge_cli": ROOT / "tools" / "callbridge_cli",
    "callbridge_local": ROOT / "tools" / "callbridge_local",
}
REGISTRY = "callbridge/registry.py"
# The modules that import by a name known only at run time, and what they import so.
DYNAMIC_IMPORTERS = {
    REGISTRY: "the PBX and CRM packages, by the kind an account names",
    "callbridge_local/handlers.py": "the handlers template.yaml names, as Lambda's own loader does",
    "callbridge_cli/main.py": "its own command groups, on demand (`--help` of one loads only it)",
}
IMPORT_CALLS = frozenset({"import_module", "__import__", "find_spec", "spec_from_file_location", "reload"})
CONNECTOR_MODULE = re.compile(r"callbridge\.(pbx|crm)\.\w+(\.\w+)*")
DOTTED_PREFIX = re.compile(r"callbridge(\.\w+)*\.")  # what an f-string building a module path starts with
HANDLERS = frozenset(path.stem for path in TREES["functions"].glob("*.py"))


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def hidden_imports(label: str, source: str) -> list[str]:
    """What is wrong in the module shown as `label` (e.g. callbridge/features/admin.py)."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        where = f"{label}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call) and label not in DYNAMIC_IMPORTERS:
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in IMPORT_CALLS:
                found.append(f"{where}: imports by a name made at run time ({name})")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and label != REGISTRY:
            if id(node) not in docstrings and CONNECTOR_MODULE.fullmatch(node.value):
                found.append(f"{where}: names the module {node.value} (ask the registry by kind)")
        elif isinstance(node, ast.JoinedStr) and label != REGISTRY and node.values:
            first = node.values[0]
            if (
                isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and DOTTED_PREFIX.fullmatch(first.value)
            ):
                found.append(f"{where}: builds a module path {first.value}… (ask the registry by kind)")
        elif label.startswith("functions/") and isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom) and node.level:
                found.append(f"{where}: a relative import (functions/ is no package on Lambda)")
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in HANDLERS - {Path(label).stem}:
                    found.append(f"{where}: imports the handler {module} (each ships alone: functions/Makefile)")
    return found


def _modules() -> Iterator[tuple[str, Path]]:
    for name, root in TREES.items():
        for path in sorted(root.rglob("*.py")):
            yield f"{name}/{path.relative_to(root).as_posix()}", path


def test_no_module_is_imported_or_named_where_lint_imports_cannot_see_it() -> None:
    found = [problem for label, path in _modules() for problem in hidden_imports(label, path.read_text("utf-8"))]
    assert found == []


def test_the_dynamic_importers_exist() -> None:
    """An entry for a module that is gone would allow its name to a new one."""
    labels = {label for label, _ in _modules()}
    assert set(DYNAMIC_IMPORTERS) <= labels


@pytest.mark.parametrize(
    ("label", "source", "problems"),
    [
        # by string, the bad imports the contracts cannot see
        (
            "callbridge/features/routing.py",
            'import importlib\nimportlib.import_module("callbridge.crm.bitrix24.api")',
            2,
        ),
        ("callbridge/core/config.py", 'KINDS = {"retailcrm": "callbridge.crm.retailcrm"}', 1),
        ("callbridge/features/admin.py", 'def f(kind):\n    return __import__(f"callbridge.pbx.{kind}.adapter")', 2),
        ("callbridge/edge/static.py", 'import sys\nsys.modules["callbridge.pbx.cloudpbx.adapter"]', 1),
        ("callbridge_local/runtime.py", 'import importlib\nimportlib.import_module("callbridge.features.admin")', 1),
        ("callbridge_cli/commands/users.py", 'from importlib.util import find_spec\nfind_spec("callbridge.store")', 1),
        # a handler importing another
        ("functions/contact.py", "from history import handler", 1),
        ("functions/contact.py", "import cloudpbx", 1),
        ("functions/contact.py", "from . import history", 1),
        # what is allowed
        ("callbridge/registry.py", 'import importlib\nimportlib.import_module("callbridge.crm.bitrix24.api")', 0),
        ("callbridge/registry.py", 'PBX = {"ccrm": "callbridge.pbx.ccrm"}\nf"callbridge.pbx.{PBX}"', 0),
        ("callbridge/features/calls.py", '"""As callbridge.crm.base says."""\nX = "see callbridge.crm.base"', 0),
        ("callbridge_local/handlers.py", "import importlib\nimportlib.import_module(name)", 0),
        ("functions/contact.py", "from callbridge.edge.cloudpbx import handle\nimport json", 0),
    ],
)
def test_the_check_finds_what_it_is_for(label: str, source: str, problems: int) -> None:
    assert len(hidden_imports(label, source)) == problems, hidden_imports(label, source)
