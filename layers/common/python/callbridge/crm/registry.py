"""CRM connectors by settings kind (the registry itself: callbridge.registry)."""

from __future__ import annotations

from typing import Any

from callbridge import registry
from callbridge.core.config import MASK, CrmSettings
from callbridge.crm.base import Connector, DeliveryContext
from callbridge.infra.secrets import crm_secret_name


def settings_model(crm: dict[str, Any], account_secrets: dict[str, str]) -> CrmSettings:
    """A CRM's settings from the stored account config, its masked secret fields filled from SSM."""
    model = registry.crm_settings_model(str(crm.get("kind")))
    name = str(crm.get("name") or crm.get("kind"))
    data = {
        key: account_secrets.get(crm_secret_name(name, key), value) if value == MASK else value
        for key, value in crm.items()
    }
    return model.model_validate(data)


def connector(settings: CrmSettings, ctx: DeliveryContext, **options: Any) -> Connector:
    factory = registry.crm_connector(settings.kind)
    api_key = getattr(settings, "api_key", None)
    connector: Connector = factory(settings, ctx, api_key.get_secret_value() if api_key else "", **options)
    return connector
