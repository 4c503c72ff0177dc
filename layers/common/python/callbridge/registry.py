"""The two registries: which PBX adapters and CRM connectors CallBridge has.

Adding a PBX or a CRM is its package under callbridge/pbx or callbridge/crm plus one line here. The
packages are named by module path and imported on first use, so that a function loads only the
adapters its accounts use (the contact path's cold start is measured: bench/benchmark.py). The core
never imports this module: callbridge/__init__.py hands it to the core (core/catalog.py), which
asks it for the settings models when an account is validated.

Each package has a `settings` module whose `SETTINGS` is its account-file model (a PbxSettings or
CrmSettings subclass), and a PBX an `adapter` module with `ADAPTER`, a CRM a `connector` module with
`CONNECTOR` (the interfaces: callbridge.pbx.base, callbridge.crm.base). Package `__init__` modules
stay empty: importing a webhook module must not load pydantic models it does not use.

A package whose adapter reads more of a user mapping than the shared fields (its user id or code in
that system) declares them in its settings module too: `USER_FIELDS`, a callbridge.core.config
UserFields model. `user_field_models()` lists them, when a user mapping is validated.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callbridge.core.config import CrmSettings, PbxSettings, UserFields
    from callbridge.core.webhooks import PbxWebhooks

PBX: dict[str, str] = {
    "cloudpbx": "callbridge.pbx.cloudpbx",
    "telediscount": "callbridge.pbx.telediscount",
    "ccrm": "callbridge.pbx.ccrm",
}

CRM: dict[str, str] = {
    "minicrm": "callbridge.crm.minicrm",
    "retailcrm": "callbridge.crm.retailcrm",
    "bitrix24": "callbridge.crm.bitrix24",
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


def pbx_webhooks(kind: str) -> PbxWebhooks | None:
    """The webhooks a PBX declares (its `webhooks` module's WEBHOOKS, core/webhooks.py), served by
    edge/webhooks.py; None for a PBX that sends none (we poll it)."""
    try:
        declared: PbxWebhooks = _module(PBX, "PBX", kind, "webhooks").WEBHOOKS
    except ModuleNotFoundError as missing:
        if missing.name != f"{PBX[kind]}.webhooks":
            raise
        return None
    return declared


def crm_connector(kind: str) -> Any:
    return _module(CRM, "CRM", kind, "connector").CONNECTOR


def user_field_models(claiming: Iterable[str] | None = None) -> tuple[type[UserFields], ...]:
    """The `USER_FIELDS` of the registered packages that declare some, each once: all of them, or
    (`claiming`) enough of them to declare those field names, if any can.

    It imports the packages' settings modules (not their adapters), when a user mapping with package
    fields is validated (callbridge.core.config.UserMapping), never at import. The modules already
    loaded come first: an account's users are validated after its PBX and CRMs, whose settings then
    are, and their fields are what a mapping usually names; the other packages stay unloaded on a
    cold start (bench/benchmark.py) unless a field is theirs, or nobody's (then all are asked)."""
    paths = [f"{path}.settings" for path in (*PBX.values(), *CRM.values())]
    wanted = None if claiming is None else set(claiming)
    models: list[type[UserFields]] = []
    for path in sorted(paths, key=lambda path: path not in sys.modules):
        if wanted is not None and not wanted:
            break
        model: type[UserFields] | None = getattr(importlib.import_module(path), "USER_FIELDS", None)
        if model is not None and model not in models:
            models.append(model)
            if wanted is not None:
                wanted -= set(model.model_fields)
    return tuple(models)
