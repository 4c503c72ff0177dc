"""The Zadarma (or Novofon) part of an account file (docs/zadarma.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from callbridge.core.config import PbxSettings, PeerUrl, Secret, WebhookToken, expand_env

# The API of each platform: the same methods and signatures, another host (docs/protocols/zadarma.md).
PLATFORM_URLS = {"zadarma": "https://api.zadarma.com", "novofon": "https://api.novofon.com"}


class ZadarmaSettings(PbxSettings):
    """Zadarma / Novofon: it POSTs signed notifications to our address; we call its REST API v1."""

    kind: Literal["zadarma"] = "zadarma"
    platform: Literal["zadarma", "novofon"] = Field(
        default="zadarma", description="zadarma (api.zadarma.com) or novofon (api.novofon.com)"
    )
    api_url: PeerUrl | None = Field(default=None, description="Another API base than the platform's (tests)")
    api_key: Secret = Field(description="The API user key from the cabinet (Settings → API)")
    api_secret: Secret = Field(description="The API secret key: signs our requests and the PBX's notifications")
    webhook_secret: WebhookToken = Field(description="Secret last path segment of our notification address")

    @field_validator("api_key", "api_secret", "webhook_secret", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)

    @property
    def api_base(self) -> str:
        return (self.api_url or PLATFORM_URLS[self.platform]).rstrip("/")


SETTINGS = ZadarmaSettings
