"""The two registries: which PBX adapters and CRM connectors CallBridge has.

Adding a PBX or a CRM is its package under callbridge/pbx or callbridge/crm plus one line here. The
packages are named by module path and imported on first use, so that a function loads only the
adapters its accounts use (the contact path's cold start is measured: bench/benchmark.py). The core
never imports this module: callbridge/__init__.py hands it to the core (core/catalog.py), which
asks it for the settings models when an account is validated.

Each package has a `settings` module whose `SETTINGS` is its account-file model (a PbxSettings or
CrmSettings subclass), and a PBX an `adapter` module with `ADAPTER` (a PbxAdapter), a CRM a
`connector` module with `PACKAGE` (a CrmPackage: its connector class); the interfaces:
callbridge.pbx.base, callbridge.crm.base. Package `__init__` modules stay empty: importing a webhook
module must not load pydantic models it does not use.

Optional capabilities (click-to-call, call cards, callback tasks, ...) are declared once, in the
package's table (`ADAPTER.capabilities`, `PACKAGE.capabilities`: capability protocol -> the module of
the package that implements it). `pbx_capability` and `crm_capability` resolve one for a kind: the
module, imported when first asked for and checked against the protocol, or None when the package
does not offer it. The callers name the protocol, never a package, and forward nothing.

A package whose adapter reads more of a user mapping than the shared fields (its user id or code in
that system) declares them in its settings module too: `USER_FIELDS`, a callbridge.core.config
UserFields model. `user_field_models()` lists them, when a user mapping is validated.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

if TYPE_CHECKING:
    from collections.abc import Mapping

    from callbridge.core.config import CrmSettings, PbxSettings, UserFields
    from callbridge.core.webhooks import PbxWebhooks
    from callbridge.crm.base import Connector, CrmPackage, DeliveryContext
    from callbridge.pbx.base import PbxAdapter

C = TypeVar("C")  # a capability protocol (callbridge.pbx.base, callbridge.crm.base)
# A capability is asked for by its protocol class, typed as what calling it would make: mypy takes no
# protocol where a `type[C]` is expected ("only concrete class"), and the caller then gets a C.
CapabilityOf = Callable[..., C]

PBX: dict[str, str] = {
    "cloudpbx": "callbridge.pbx.cloudpbx",
    "telediscount": "callbridge.pbx.telediscount",
    "ccrm": "callbridge.pbx.ccrm",
    "zadarma": "callbridge.pbx.zadarma",
}

CRM: dict[str, str] = {
    "minicrm": "callbridge.crm.minicrm",
    "retailcrm": "callbridge.crm.retailcrm",
    "bitrix24": "callbridge.crm.bitrix24",
    "kommo": "callbridge.crm.kommo",
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


def pbx_adapter(kind: str) -> PbxAdapter:
    from callbridge.pbx.base import PbxAdapter

    found = _module(PBX, "PBX", kind, "adapter").ADAPTER
    if not isinstance(found, PbxAdapter):
        raise TypeError(f"{PBX[kind]}.adapter: ADAPTER is no PbxAdapter")
    return found


def pbx_adapter_or_none(kind: str | None) -> PbxAdapter | None:
    """The adapter of `kind`; None for a kind no registry line names (an account without a PBX)."""
    return pbx_adapter(kind) if kind in PBX else None


def pbx_capability(kind: str | None, capability: CapabilityOf[C]) -> C | None:
    """The PBX of `kind`'s implementation of `capability` (a protocol of callbridge.pbx.base); None
    when it offers none, or no registry line names the kind."""
    if kind not in PBX:
        return None
    return _capability(PBX, "PBX", kind, pbx_adapter(kind).capabilities, capability)


def pbx_offers(kind: str, capability: CapabilityOf[Any]) -> bool:
    """Whether the PBX of `kind` declares `capability`, without importing its implementation."""
    return kind in PBX and capability in pbx_adapter(kind).capabilities


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


def crm_package(kind: str) -> CrmPackage:
    from callbridge.crm.base import CrmPackage

    found = _module(CRM, "CRM", kind, "connector").PACKAGE
    if not isinstance(found, CrmPackage):
        raise TypeError(f"{CRM[kind]}.connector: PACKAGE is no CrmPackage")
    return found


def crm_connector(kind: str) -> Callable[..., Connector]:
    """The connector class of `kind`: (settings, DeliveryContext, api key, options) -> Connector."""
    return crm_package(kind).connector


def connector(settings: CrmSettings, ctx: DeliveryContext, **options: Any) -> Connector:
    """The connector that delivers to this CRM (its api key from `settings`)."""
    from callbridge.crm.base import secret

    return crm_connector(settings.kind)(settings, ctx, secret(settings, "api_key"), **options)


def crm_capability(kind: str, capability: CapabilityOf[C]) -> C | None:
    """The CRM of `kind`'s implementation of `capability` (a protocol of callbridge.crm.base); None
    when it offers none. Whether an account's CRM has it switched on its settings say
    (callbridge.crm.base.offers)."""
    return _capability(CRM, "CRM", kind, crm_package(kind).capabilities, capability)


def _capability(
    table: dict[str, str], side: str, kind: str, declared: Mapping[type[Any], str], capability: CapabilityOf[C]
) -> C | None:
    module = declared.get(capability) if isinstance(capability, type) else None
    if module is None:
        return None
    found = _module(table, side, kind, module)
    if not _implements(found, capability):
        raise TypeError(f"{found.__name__} does not implement {getattr(capability, '__name__', capability)}")
    return found


def _implements(found: object, capability: CapabilityOf[C]) -> TypeGuard[C]:
    """Whether `found` (a package's module) has every function of the runtime-checkable protocol."""
    return isinstance(capability, type) and isinstance(found, capability)


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
