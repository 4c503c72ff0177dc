"""The Cloud PBX part of an account file."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from callbridge.core.config import STORED_SECRET, PbxSettings, PeerUrl, Secret, WebhookToken, expand_env


class CloudPbxSettings(PbxSettings):
    """Cloud PBX "REST API for CRM" (docs/cloudpbx.md)."""

    stored_without: ClassVar[frozenset[str]] = frozenset({"token", "crm_tokens"})

    @classmethod
    def stored_placeholders(cls) -> dict[str, Any]:
        return {"crm_tokens": [STORED_SECRET]}

    kind: Literal["cloudpbx"] = "cloudpbx"
    api_url: PeerUrl | None = Field(
        default=None, description="The PBX's CRM API address, e.g. https://domain/sys/crm_api.wcgp"
    )
    token: Secret | None = Field(default=None, description="The PBX key from its web cabinet (our requests to it)")
    crm_tokens: list[WebhookToken] = Field(
        min_length=1,
        max_length=2,
        description="Keys the PBX presents to us. The first is current; a second stays valid during a rotation.",
    )

    @field_validator("token", mode="before")
    @classmethod
    def _token_env(cls, value: Any) -> Any:
        return expand_env(value)

    @field_validator("crm_tokens", mode="before")
    @classmethod
    def _tokens_env(cls, value: Any) -> Any:
        return [expand_env(v) for v in value] if isinstance(value, list) else value


SETTINGS = CloudPbxSettings
