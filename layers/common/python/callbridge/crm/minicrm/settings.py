"""The MiniCRM part of an account file."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from callbridge.core.config import CrmSettings, DeliveryMode, PeerUrl, Secret, UserFields, expand_env

MINICRM_IPS = ("195.228.75.210", "195.228.75.211")  # MiniCRM's documented downloader IPs (docs/minicrm.md)


class MiniCrmSettings(CrmSettings):
    """MiniCRM call log (docs/minicrm.md)."""

    kind: Literal["minicrm"] = "minicrm"
    name: str = Field(default="minicrm", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Destination id")
    base_url: PeerUrl = Field(default="https://r3.minicrm.io", description="Without /Api/CallLog")
    api_key: Secret = Field(description="The VOIP ApiKey (MiniCRM / Settings / System)")
    mode: DeliveryMode = Field(default="batch", description="realtime: right after each call; batch: by schedule")
    number_format: Literal["e164", "national"] = "e164"
    default_user_extension: str | None = Field(
        default=None, description="UserExtension for calls of PBX users without a MiniCRM mapping"
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)


class MiniCrmUser(UserFields):
    """Who a PBX user is in MiniCRM: the UserExtension its call log takes (docs/minicrm.md)."""

    minicrm_extension: str | None = Field(default=None, description="MiniCRM UserExtension; default: extension")


SETTINGS = MiniCrmSettings
USER_FIELDS = MiniCrmUser
