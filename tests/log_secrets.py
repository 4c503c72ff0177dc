"""The check behind "no configured secret appears in any log line": every secret value of the
account files a runtime was started with, searched in everything the runtime printed."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from callbridge.core.config import load_account_file

# Printed on purpose: at startup the runtime shows the operator what to paste into the PBX
# cabinet (admin.cabinet_lines: "Cloud PBX → CRM key (crm_token): ..." and the telediscount and
# Zadarma URLs that carry the webhook secret). Exactly those lines are exempt; every other line is checked.
CABINET_MARKERS = ("Cloud PBX → CRM key (crm_token):", "telediscount webhook '", "Zadarma notifications address")


def _secrets(node: Any) -> Iterable[str]:
    if isinstance(node, SecretStr):
        yield node.get_secret_value()
    elif isinstance(node, BaseModel):
        for name in type(node).model_fields:
            yield from _secrets(getattr(node, name))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _secrets(item)


def configured_secrets(accounts_dir: Path) -> set[str]:
    found: set[str] = set()
    for path in sorted(accounts_dir.glob("*.y*ml")):
        found.update(s for s in _secrets(load_account_file(path)) if len(s) >= 6)
    return found


def leaked_lines(output: str, secrets: set[str]) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if not any(marker in line for marker in CABINET_MARKERS) and any(secret in line for secret in secrets)
    ]
