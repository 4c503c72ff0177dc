"""Each architecture contract (pyproject.toml [tool.importlinter]) fails when a bad import is added.

A contract that cannot fail protects nothing: for each one, a copy of the package gets one import
that breaks exactly that rule, and lint-imports must report that contract broken. The real tree
keeping every contract is checked by tools/test.sh (`lint-imports`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "common" / "python" / "callbridge"

# contract id -> (module that gets the bad import, the import)
BAD_IMPORTS = {
    "layers": ("store/calls.py", "import callbridge.features.admin"),
    "core-knows-no-adapter": ("core/model.py", "import callbridge.crm.base"),
    "pbx-independent": ("pbx/ccrm/client.py", "import callbridge.pbx.telediscount.client"),
    "crm-independent": ("crm/minicrm/connector.py", "import callbridge.crm.retailcrm.api"),
    "no-cycles": ("infra/clock.py", "import callbridge.infra.http"),
}


def lint(tree: Path, contract: str) -> subprocess.CompletedProcess[str]:
    command = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", command, "--no-cache", "--contract", contract, str(ROOT / "pyproject.toml")],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("contract", sorted(BAD_IMPORTS))
def test_the_contract_is_kept_and_breaks_on_a_bad_import(contract: str, tmp_path: Path) -> None:
    tree = tmp_path / "python"
    shutil.copytree(PACKAGE, tree / "callbridge", ignore=shutil.ignore_patterns("__pycache__"))
    kept = lint(tree, contract)
    assert kept.returncode == 0, kept.stdout + kept.stderr

    module, bad_import = BAD_IMPORTS[contract]
    target = tree / "callbridge" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{bad_import}  # deliberately wrong\n", encoding="utf-8")
    broken = lint(tree, contract)
    assert broken.returncode != 0, broken.stdout
    assert "BROKEN" in broken.stdout
