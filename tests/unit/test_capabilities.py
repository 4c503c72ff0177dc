"""Optional capabilities are declared once per package (its `ADAPTER.capabilities` or
`PACKAGE.capabilities` table) and resolved by callbridge.registry, typed: every declared one is a
module that implements its protocol, a package that declares none answers None, and a module that
lacks a function of its protocol is refused when it is first asked for, not called half-way."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import pytest

from callbridge import registry
from callbridge.crm import base as crm
from callbridge.pbx import base as pbx

# A CRM's settings say whether an account's CRM offers a capability (crm.base.offers); the
# connector module's table says which module implements it. Each flag has its protocol.
SETTINGS_FLAGS: dict[str, type[Any]] = {
    "live_cards": crm.LiveCards,
    crm.RESPONSIBLE_LOOKUP: crm.ResponsibleLookup,
    crm.CLICK_TO_CALL_SECRET: crm.Callbacks,
    crm.MODULE_REGISTRATION: crm.ModuleRegistration,
    crm.CALLBACK_TASKS: crm.CallbackTasks,
}


@pytest.mark.parametrize("kind", sorted(registry.CRM))
def test_every_declared_crm_capability_resolves_to_its_protocol(kind: str) -> None:
    declared = registry.crm_package(kind).capabilities
    assert declared, f"{kind} declares no capability"
    for capability in declared:
        found = registry.crm_capability(kind, capability)
        assert isinstance(found, ModuleType) and isinstance(found, capability)
        assert found.__name__.startswith(registry.CRM[kind] + ".")  # its own package's module


@pytest.mark.parametrize("kind", sorted(registry.PBX))
def test_every_declared_pbx_capability_resolves_to_its_protocol(kind: str) -> None:
    declared = registry.pbx_adapter(kind).capabilities
    for capability in declared:
        assert registry.pbx_offers(kind, capability)
        found = registry.pbx_capability(kind, capability)
        assert isinstance(found, ModuleType) and isinstance(found, capability)
        assert found.__name__.startswith(registry.PBX[kind] + ".")
    for capability in {pbx.Dialer, pbx.UserListing, pbx.ScheduledJob, pbx.Backfill} - set(declared):
        assert registry.pbx_capability(kind, capability) is None and not registry.pbx_offers(kind, capability)


@pytest.mark.parametrize("kind", sorted(registry.CRM))
def test_a_crm_settings_flag_and_its_implementation_are_declared_together(kind: str) -> None:
    settings = registry.crm_settings_model(kind)
    declared = registry.crm_package(kind).capabilities
    for flag, capability in SETTINGS_FLAGS.items():
        # A ClassVar or a property (an account-file field switches it on): either way, on the class.
        can_offer = bool(getattr(settings, flag, None))
        assert can_offer == (capability in declared), f"{kind}: {flag} vs {capability.__name__}"


def test_what_a_package_does_not_offer_is_none_and_an_unknown_kind_is_refused() -> None:
    assert registry.crm_capability("minicrm", crm.LiveCards) is None
    assert registry.pbx_capability("ccrm", pbx.Dialer) is None
    assert registry.pbx_capability(None, pbx.Dialer) is None  # an account without a PBX
    with pytest.raises(registry.UnknownKind):
        registry.crm_capability("nocrm", crm.LiveCards)


def _package(monkeypatch: pytest.MonkeyPatch, path: str, **modules: ModuleType) -> None:
    monkeypatch.setitem(sys.modules, path, ModuleType(path))
    for name, module in modules.items():
        module.__name__ = f"{path}.{name}"
        monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(registry.CRM, path.rsplit(".", 1)[1], path)


def test_a_module_lacking_a_function_of_its_protocol_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    connector, cards, tasks = ModuleType("connector"), ModuleType("cards"), ModuleType("tasks")
    connector.PACKAGE = crm.CrmPackage(  # type: ignore[attr-defined]
        connector=registry.crm_connector("minicrm"), capabilities={crm.LiveCards: "cards", crm.CallbackTasks: "tasks"}
    )
    cards.send_live = lambda account, settings, message: True  # type: ignore[attr-defined]
    tasks.open_callback_task = tasks.close_callback_task = lambda *args: None  # type: ignore[attr-defined]
    _package(monkeypatch, "tests_capabilities.halfcrm", connector=connector, cards=cards, tasks=tasks)

    assert registry.crm_capability("halfcrm", crm.LiveCards) is cards
    # No `new_contact`: refused when first asked for, before any call is half-handled.
    with pytest.raises(TypeError, match=r"tests_capabilities\.halfcrm\.tasks does not implement CallbackTasks"):
        registry.crm_capability("halfcrm", crm.CallbackTasks)
    assert registry.crm_capability("halfcrm", crm.ResponsibleLookup) is None


def test_a_connector_module_without_a_package_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    connector = ModuleType("connector")
    connector.PACKAGE = object()  # type: ignore[attr-defined]
    _package(monkeypatch, "tests_capabilities.oddcrm", connector=connector)
    with pytest.raises(TypeError, match="PACKAGE is no CrmPackage"):
        registry.crm_connector("oddcrm")
