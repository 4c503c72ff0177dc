"""How the core finds the PBX and CRM packages' settings models without knowing the packages.

An account file's `pbx.kind` and `crms[].kind` pick a package's settings model, and a user mapping's
own fields are checked against the packages' `USER_FIELDS` (core/config.py). Which packages exist is
the registry's knowledge (callbridge/registry.py), and the registry sits above the core: the core
never imports it. The registry is handed in instead (`install`), by the package `callbridge` itself
when it is first imported, so it is here before any account is validated, in a Lambda function, the
CLI, the local runtime or a test alike.

This module loads nothing but the standard library: installing the registry costs a webhook's cold
start no pydantic model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol


class SettingsCatalog(Protocol):
    """What the core asks the registry. The models are typed `Any` here, because naming the settings
    classes would make this module import core/config.py, which imports it: core/config.py checks
    what it gets (`pbx_settings_model` there)."""

    def pbx_settings_model(self, kind: str) -> type[Any]: ...

    def crm_settings_model(self, kind: str) -> type[Any]: ...

    def user_field_models(self, claiming: Iterable[str] | None = None) -> tuple[type[Any], ...]: ...


_installed: SettingsCatalog | None = None


def install(catalog: SettingsCatalog) -> None:
    """Hand the core the registry's lookups (callbridge/__init__.py does, once per process)."""
    global _installed
    _installed = catalog


def installed() -> SettingsCatalog:
    if _installed is None:
        raise RuntimeError("no registry is installed in callbridge.core.catalog (callbridge/__init__.py installs it)")
    return _installed
