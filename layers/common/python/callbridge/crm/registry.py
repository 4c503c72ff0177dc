"""CRM connectors by settings kind (the registry itself: callbridge.registry)."""

from __future__ import annotations

from typing import Any

from callbridge import registry
from callbridge.core.config import CrmSettings
from callbridge.crm.base import Connector, DeliveryContext, secret
from callbridge.crm.base import with_secrets as with_secrets


def connector_class(kind: str) -> Any:
    """The CONNECTOR of a kind: its class also carries the optional capabilities (callbridge.crm.base)."""
    return registry.crm_connector(kind)


def connector(settings: CrmSettings, ctx: DeliveryContext, **options: Any) -> Connector:
    factory = connector_class(settings.kind)
    made: Connector = factory(settings, ctx, secret(settings, "api_key"), **options)
    return made
