"""CRM connectors by settings kind (the registry itself: callbridge.registry), and the one way to a
CRM's settings with its secrets."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from callbridge import registry
from callbridge.core.config import STORED_SECRET, CrmSettings
from callbridge.crm.base import Connector, DeliveryContext
from callbridge.infra import secrets


def with_secrets(account_id: str, crm: CrmSettings, *, force: bool = False) -> CrmSettings:
    """A CRM's typed settings (`account.settings.crms`) with the secret placeholders of the stored
    config replaced by the secrets in SSM. A secret SSM lacks keeps its placeholder, which no CRM
    accepts: the request fails like a wrong key and is retried once the secret is put."""
    values = secrets.account_secrets(account_id, force=force)
    filled: dict[str, Any] = {}
    for key in type(crm).model_fields:
        value = getattr(crm, key)
        if isinstance(value, SecretStr) and value.get_secret_value() == STORED_SECRET:
            stored = values.get(secrets.crm_secret_name(crm.name, key))
            if stored:
                filled[key] = SecretStr(stored)
    return crm.model_copy(update=filled) if filled else crm


def secret(crm: CrmSettings, field_name: str) -> str:
    """A secret field's value ("" when the model has no such field)."""
    value = getattr(crm, field_name, None)
    return value.get_secret_value() if isinstance(value, SecretStr) else ""


def connector_class(kind: str) -> Any:
    """The CONNECTOR of a kind: its class also carries the optional capabilities (callbridge.crm.base)."""
    return registry.crm_connector(kind)


def connector(settings: CrmSettings, ctx: DeliveryContext, **options: Any) -> Connector:
    factory = connector_class(settings.kind)
    made: Connector = factory(settings, ctx, secret(settings, "api_key"), **options)
    return made
