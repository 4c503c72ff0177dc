"""The Bitrix24 account-file entry's two ways in (docs/bitrix24.md): exactly one of webhook_url and
app, the app's client secret kept in SSM like every secret, and which functions may write tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from callbridge.core.config import STORED_SECRET, AccountConfig
from callbridge.crm.bitrix24.settings import OAUTH_URL, Bitrix24Settings
from callbridge.features.admin import secret_fields
from callbridge_local import cfn_yaml

WEBHOOK = "https://example.bitrix24.ru/rest/1/abcdef123456/"
APP = {"portal": "https://example.bitrix24.ru", "client_id": "local.65a1b2c3d4e5f6.12345678",
       "client_secret": "app-client-secret-0001"}  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


def settings(**fields: Any) -> Bitrix24Settings:
    return Bitrix24Settings.model_validate({"kind": "bitrix24", "name": "bitrix24", **fields})


def test_either_way_alone_is_accepted() -> None:
    assert settings(webhook_url=WEBHOOK).app is None
    app = settings(app=APP).app
    assert app is not None and app.oauth_url == OAUTH_URL and app.domain == "example.bitrix24.ru"


@pytest.mark.parametrize("fields", [{}, {"webhook_url": WEBHOOK, "app": APP}], ids=["neither", "both"])
def test_exactly_one_way_else_an_error_naming_both_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match=r"exactly one of webhook_url .* and app"):
        settings(**fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [("portal", "https://example.bitrix24.ru/rest/"), ("client_secret", "short"), ("oauth_url", "oauth.bitrix.info"),
     ("member_id", "not a member id")],
)  # fmt: skip
def test_an_app_field_that_is_wrong_is_named(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as error:
        settings(app={**APP, field: value})
    assert f"app.{field}" in str(error.value)
    assert APP["client_secret"] not in str(error.value)


def test_the_client_secret_goes_to_ssm_and_never_to_the_stored_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("B24_SECRET", "app-client-secret-from-env")
    crm = settings(app={**APP, "client_secret": "${B24_SECRET}"})
    assert secret_fields(crm) == {"app.client_secret": "app-client-secret-from-env"}
    config = AccountConfig.model_validate({
        "account": "b24app", "phone_region": "RU",
        "pbx": {"kind": "cloudpbx", "crm_tokens": ["b24-app-unit-token-01"]},
        "crms": [{"kind": "bitrix24", "app": APP}],
    })  # fmt: skip
    stored = config.public()
    assert APP["client_secret"] not in str(stored)
    [crm_stored] = AccountConfig.from_stored("b24app", stored).crms
    assert isinstance(crm_stored, Bitrix24Settings) and crm_stored.app is not None
    assert crm_stored.app.client_secret.get_secret_value() == STORED_SECRET  # filled from SSM: crm.base.with_secrets


def test_only_the_functions_that_call_bitrix24_may_write_its_tokens() -> None:
    template = cfn_yaml.load(ROOT / "template.yaml")
    writers: dict[str, list[Any]] = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for policy in resource["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                actions = statement.get("Action", [])
                if any(a.startswith("ssm:") and not a.startswith("ssm:Get") for a in actions):
                    writers[name] = statement["Resource"]
    # PbxWebhookFunction: Zadarma's call-start answer asks the CRMs who is calling, as ContactFunction.
    # LiveCardFunction: a call card is a Bitrix24 request like any other.
    assert sorted(writers) == [
        "CloudPbxFunction",
        "ContactFunction",
        "DeliveryDrainFunction",
        "DeliveryFunction",
        "LiveCardFunction",
        "PbxWebhookFunction",
    ]
    for resource in writers.values():
        assert str(resource).endswith("/accounts/*/crm/*/oauth/*')") or "/accounts/*/crm/*/oauth/*" in str(resource)
