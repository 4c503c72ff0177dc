"""The account file's `users:` entries: the shared fields in core/config.py's UserMapping, each PBX's
and CRM's own fields declared by its package (USER_FIELDS in its settings module)."""

from __future__ import annotations

import os
import subprocess
import sys
from types import ModuleType
from typing import Any

import pytest
from pydantic import Field, ValidationError

from callbridge import registry
from callbridge.core.config import AccountConfig, UserFields, UserMapping
from callbridge.crm.minicrm.settings import MiniCrmUser
from callbridge.crm.retailcrm.settings import RetailCrmUser
from callbridge.pbx.ccrm.settings import CcrmUser
from callbridge.pbx.telediscount.settings import TelediscountUser

BASE: dict[str, Any] = {
    "account": "acme",
    "phone_region": "RU",
    "pbx": {"kind": "cloudpbx", "crm_tokens": ["a-webhook-token-of-16+"]},
}
ANDY: dict[str, Any] = {
    "pbx_user": "andy",
    "name": "Andrey",
    "extension": "101",
    "sip_account": "SIP/00000000672",
    "ccrm_internal": "107",
    "retailcrm_user_id": 7,
    "retailcrm_code": "201",
    "minicrm_extension": "B3",
}


def errors(users: list[dict[str, Any]]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as raised:
        AccountConfig.model_validate({**BASE, "users": users})
    return [(".".join(str(part) for part in e["loc"]), e["type"]) for e in raised.value.errors()]


def test_every_package_field_stays_where_the_account_file_has_it() -> None:
    andy = AccountConfig.model_validate({**BASE, "users": [ANDY]}).users[0]
    assert (andy.pbx_user, andy.name, andy.extension) == ("andy", "Andrey", "101")
    assert TelediscountUser.of(andy) == TelediscountUser(sip_account="SIP/00000000672")
    assert CcrmUser.of(andy) == CcrmUser(ccrm_internal="107")
    assert RetailCrmUser.of(andy) == RetailCrmUser(retailcrm_user_id=7, retailcrm_code="201")
    assert MiniCrmUser.of(andy) == MiniCrmUser(minicrm_extension="B3")


def test_a_user_without_a_packages_fields_reads_its_defaults() -> None:
    olga = UserMapping.model_validate({"pbx_user": "olga"})
    assert RetailCrmUser.of(olga) == RetailCrmUser()
    assert TelediscountUser.of(olga).sip_account is None


def test_values_are_validated_with_the_packages_types() -> None:
    assert (
        RetailCrmUser.of(UserMapping.model_validate({"pbx_user": "a", "retailcrm_user_id": "7"})).retailcrm_user_id == 7
    )
    assert errors([{"pbx_user": "a"}, {"pbx_user": "b", "retailcrm_user_id": "seven"}]) == [
        ("users.1.retailcrm_user_id", "int_parsing")
    ]
    assert errors([{"pbx_user": "a", "minicrm_extension": 5}]) == [("users.0.minicrm_extension", "string_type")]


def test_a_field_no_package_declares_is_refused_by_its_name() -> None:
    assert errors([{"pbx_user": "a", "retailcrm_userid": 7}]) == [("users.0.retailcrm_userid", "extra_forbidden")]
    assert errors([{"extension": "101", "sip_acount": "SIP/1"}]) == [
        ("users.0.pbx_user", "missing"),
        ("users.0.sip_acount", "extra_forbidden"),
    ]


def test_the_stored_config_keeps_the_package_fields() -> None:
    config = AccountConfig.model_validate({**BASE, "users": [ANDY]})
    stored = config.public()
    assert stored["users"] == [ANDY]
    again = AccountConfig.from_stored("acme", stored)
    assert again.users == config.users
    assert RetailCrmUser.of(again.users[0]).retailcrm_user_id == 7


def test_every_registered_package_field_is_optional_and_has_one_owner() -> None:
    models = registry.user_field_models()
    assert {TelediscountUser, CcrmUser, RetailCrmUser, MiniCrmUser} <= set(models)
    names = [name for model in models for name in model.model_fields]
    assert len(names) == len(set(names))
    assert not set(names) & set(UserMapping.model_fields)
    assert all(not field.is_required() for model in models for field in model.model_fields.values())


class AmoCrmUser(UserFields):
    amocrm_user_id: int | None = Field(default=None, description="The user's ID in amoCRM")


def register(monkeypatch: pytest.MonkeyPatch, path: str, model: type[UserFields]) -> None:
    package, settings = ModuleType(path), ModuleType(f"{path}.settings")
    settings.USER_FIELDS = model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, path, package)
    monkeypatch.setitem(sys.modules, f"{path}.settings", settings)
    monkeypatch.setitem(registry.CRM, path.rsplit(".", 1)[1], path)


def test_a_new_connector_brings_its_user_fields_without_a_core_change(monkeypatch: pytest.MonkeyPatch) -> None:
    assert errors([{"pbx_user": "a", "amocrm_user_id": 9}]) == [("users.0.amocrm_user_id", "extra_forbidden")]
    register(monkeypatch, "tests_userfields.amocrm", AmoCrmUser)
    andy = UserMapping.model_validate({"pbx_user": "andy", "amocrm_user_id": "9", "retailcrm_user_id": 7})
    assert AmoCrmUser.of(andy).amocrm_user_id == 9
    assert RetailCrmUser.of(andy).retailcrm_user_id == 7


def test_two_packages_cannot_claim_one_field(monkeypatch: pytest.MonkeyPatch) -> None:
    class OtherRetailCrmUser(UserFields):
        retailcrm_code: str | None = None

    register(monkeypatch, "tests_userfields.other", OtherRetailCrmUser)
    # A field nobody declares has every package's model asked: the clash shows.
    with pytest.raises(TypeError, match="retailcrm_code"):
        UserMapping.model_validate({"pbx_user": "a", "nobodys_field": "1"})


def test_a_mapping_loads_only_the_packages_whose_fields_it_names() -> None:
    # The contact path parses the account on a cold start: other packages' settings stay unloaded.
    script = """
import sys
from callbridge.core.config import AccountConfig
config = AccountConfig.model_validate({
    "account": "acme", "phone_region": "RU",
    "pbx": {"kind": "cloudpbx", "crm_tokens": ["a-webhook-token-of-16+"]},
    "crms": [{"kind": "retailcrm", "base_url": "https://acme.retailcrm.ru", "api_key": "an-api-key",
              "client_id": "a-client-id-of-16+"}],
    "users": [{"pbx_user": "andy", "extension": "101", "retailcrm_user_id": 7}],
})
print(" ".join(sorted(m for m in sys.modules if m.startswith(("callbridge.pbx.", "callbridge.crm.")) and m.endswith(".settings"))))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert run.stdout.split() == ["callbridge.crm.retailcrm.settings", "callbridge.pbx.cloudpbx.settings"]
