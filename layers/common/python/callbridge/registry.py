"""The two registries: which PBX adapters and CRM connectors CallBridge has.

Adding a PBX or a CRM is its package under callbridge/pbx or callbridge/crm plus one line here. The
packages are named by module path and imported on first use, so that a function loads only the
adapters its accounts use (the contact path's cold start is measured: bench/benchmark.py), and so
that the core can look an adapter up without importing any of them.

Each package has a `settings` module whose `SETTINGS` is its account-file model (a PbxSettings or
CrmSettings subclass), and a PBX an `adapter` module with `ADAPTER`, a CRM a `connector` module with
`CONNECTOR` (the interfaces: callbridge.pbx.base, callbridge.crm.base). Package `__init__` modules
stay empty: importing a webhook module must not load pydantic models it does not use.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callbridge.core.config import CrmSettings, PbxSettings

PBX: dict[str, str] = {
    "cloudpbx": "callbridge.pbx.cloudpbx",
    "telediscount": "callbridge.pbx.telediscount",
    "ccrm": "callbridge.pbx.ccrm",
}

CRM: dict[str, str] = {
    "minicrm": "callbridge.crm.minicrm",
    "retailcrm": "callbridge.crm.retailcrm",
}


class UnknownKind(ValueError):
    """A `kind` no registry line names (an account file's typo, or a connector not installed)."""


def _module(table: dict[str, str], side: str, kind: str, module: str) -> ModuleType:
    path = table.get(kind)
    if path is None:
        raise UnknownKind(f"unknown {side} kind {kind!r}; one of: {', '.join(sorted(table))}")
    return importlib.import_module(f"{path}.{module}")


def pbx_settings_model(kind: str) -> type[PbxSettings]:
    model: type[PbxSettings] = _module(PBX, "PBX", kind, "settings").SETTINGS
    return model


def crm_settings_model(kind: str) -> type[CrmSettings]:
    model: type[CrmSettings] = _module(CRM, "CRM", kind, "settings").SETTINGS
    return model


def pbx_adapter(kind: str) -> Any:
    return _module(PBX, "PBX", kind, "adapter").ADAPTER


def crm_connector(kind: str) -> Any:
    return _module(CRM, "CRM", kind, "connector").CONNECTOR
