"""The telediscount part of an account file."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from callbridge.core.config import PbxSettings, PeerUrl, Secret, UserFields, WebhookToken, expand_env


class TelediscountSettings(PbxSettings):
    """telediscount (docs/telediscount.md): it GETs our webhook URLs; we GET its API."""

    kind: Literal["telediscount"] = "telediscount"
    api_url: PeerUrl = Field(
        default="https://my.telediscount.ru/api.php/telephony",
        description="Base of the PBX API (outcome, get_calls, get_record)",
    )
    api_key: Secret = Field(description="abonent_api_key from the PBX cabinet")
    webhook_secret: WebhookToken = Field(description="Secret path segment of our webhook URLs")

    @field_validator("api_key", "webhook_secret", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)


class TelediscountUser(UserFields):
    """Who a PBX user is on telediscount: the SIP account its webhooks name and click-to-call dials
    from (docs/telediscount.md)."""

    sip_account: str | None = Field(default=None, description="telediscount SIP account, e.g. SIP/00000000672")


SETTINGS = TelediscountSettings
USER_FIELDS = TelediscountUser
