"""The CRM connectors, by settings kind: adding a CRM touches its module and one line here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from callbridge.core.config import MiniCrmSettings, RetailCrmSettings
from callbridge.crm.base import Connector, DeliveryContext
from callbridge.crm.minicrm.connector import MiniCrmConnector
from callbridge.crm.retailcrm.connector import RetailCrmConnector
from callbridge.infra.secrets import crm_secret_name

CONNECTORS: dict[str, tuple[type[Any], Callable[..., Connector]]] = {
    "minicrm": (MiniCrmSettings, MiniCrmConnector),
    "retailcrm": (RetailCrmSettings, RetailCrmConnector),
}


MASK = "**********"  # how pydantic dumps a SecretStr into the stored (public) account config


def settings_model(crm: dict[str, Any], account_secrets: dict[str, str]) -> MiniCrmSettings | RetailCrmSettings:
    """A CRM's settings from the stored account config, its masked secret fields filled from SSM."""
    model, _ = CONNECTORS[str(crm.get("kind"))]
    name = str(crm.get("name") or crm.get("kind"))
    data = {
        key: account_secrets.get(crm_secret_name(name, key), value) if value == MASK else value
        for key, value in crm.items()
    }
    parsed: MiniCrmSettings | RetailCrmSettings = model.model_validate(data)
    return parsed


def connector(settings: MiniCrmSettings | RetailCrmSettings, ctx: DeliveryContext, **options: Any) -> Connector:
    _, factory = CONNECTORS[settings.kind]
    return factory(settings, ctx, settings.api_key.get_secret_value(), **options)
