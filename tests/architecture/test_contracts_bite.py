"""Each architecture contract (pyproject.toml [tool.importlinter]) fails when a bad import is added.

A contract that cannot fail protects nothing: for each one, a copy of the tree lint-imports reads
(the package, the Lambda handlers of functions/, the tools) gets one import that breaks exactly that
rule, and lint-imports must report that contract broken. The copy without it keeps every contract
(the real tree is checked by tools/test.sh, `lint-imports`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What lint-imports reads (its root_packages), by where the copy puts it.
SOURCES = {
    "callbridge": ROOT / "layers" / "common" / "python" / "callbridge",
    "functions": ROOT / "functions",
    "callbridge_cli": ROOT / "tools" / "callbridge_cli",
    "callbridge_local": ROOT / "tools" / "callbridge_local",
}
TYPE_ONLY = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    "

# (contract id, module of the copy that gets the bad import, the import), one case per line.
BAD_IMPORTS = [
    ("layers", "callbridge/store/calls.py", "import callbridge.features.admin"),
    # An import only for the type checker counts too (exclude_type_checking_imports = false).
    ("layers", "callbridge/store/calls.py", TYPE_ONLY + "from callbridge.features.admin import ApplyReport"),
    ("core-knows-no-adapter", "callbridge/core/model.py", "import callbridge.crm.base"),
    ("pbx-independent", "callbridge/pbx/ccrm/client.py", "import callbridge.pbx.telediscount.client"),
    ("crm-independent", "callbridge/crm/minicrm/connector.py", "import callbridge.crm.retailcrm.api"),
    ("no-cycles", "callbridge/infra/clock.py", "import callbridge.infra.http"),
    # The circle core/config.py <-> registry.py (the registry names the settings models for mypy).
    ("no-cycles", "callbridge/core/config.py", "from callbridge import registry"),
    ("lower-layers-know-no-registry", "callbridge/store/accounts.py", "from callbridge import registry"),
    ("lower-layers-know-no-registry", "callbridge/infra/secrets.py", TYPE_ONLY + "from callbridge.registry import PBX"),
    ("features-through-registry", "callbridge/features/users.py", "from callbridge.crm.retailcrm import connector"),
    ("features-through-registry", "callbridge/features/backfill.py", "import callbridge.pbx.ccrm.importer"),
    ("functions-thin", "functions/health.py", "from callbridge.store import calls"),
    ("functions-thin", "functions/contact.py", "from callbridge.infra.secrets import account_secrets"),
    ("product-knows-no-tooling", "callbridge/features/admin.py", "import callbridge_local.runtime"),
    ("product-knows-no-tooling", "functions/health.py", "from callbridge_cli import render"),
    ("cli-knows-no-local-runtime", "callbridge_cli/commands/smoke.py", "from callbridge_local import testing"),
    ("local-runtime-boundary", "callbridge_local/gateway.py", "from callbridge.store import calls"),
    ("local-runtime-boundary", "callbridge_local/runtime.py", "from callbridge.infra import aws"),
]


def lint(tree: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    selected = [arg for contract in contracts for arg in ("--contract", contract)]
    return subprocess.run(
        [sys.executable, "-c", command, "--no-cache", *selected, str(ROOT / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_tree(tree: Path) -> Path:
    for name, source in SOURCES.items():
        shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__", "Makefile"))
    return tree


def test_every_contract_has_a_biting_case() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = {contract["id"] for contract in config["tool"]["importlinter"]["contracts"]}
    assert declared == {contract for contract, _, _ in BAD_IMPORTS}


def test_the_copy_keeps_every_contract(tmp_path: Path) -> None:
    kept = lint(copy_tree(tmp_path / "tree"))
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert " BROKEN" not in kept.stdout


@pytest.mark.parametrize(("contract", "module", "bad_import"), BAD_IMPORTS, ids=[f"{c}:{m}" for c, m, _ in BAD_IMPORTS])
def test_the_contract_breaks_on_a_bad_import(contract: str, module: str, bad_import: str, tmp_path: Path) -> None:
    tree = copy_tree(tmp_path / "tree")
    target = tree / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{bad_import}  # deliberately wrong\n", encoding="utf-8")
    broken = lint(tree, contract)
    assert broken.returncode != 0, broken.stdout
    assert "BROKEN" in broken.stdout
