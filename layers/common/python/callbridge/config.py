"""The account config file (docs/accounts.md): one YAML file per account, validated here.

Secrets may be written literally or as `${ENV_VAR}` references; either way they go to SSM
Parameter Store when the file is applied, never to DynamoDB or a log.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from callbridge.accounts import ACCOUNT_ID

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        match = _ENV_REF.match(value.strip())
        if match:
            name = match.group(1)
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set")
            return os.environ[name]
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Secret = Annotated[SecretStr, Field(min_length=8, max_length=256)]
# Webhook tokens are verified against SHA-256 digests (callbridge.accounts): they must be long random
# strings, not passwords a person picks.
WebhookToken = Annotated[SecretStr, Field(min_length=16, max_length=256)]


class CloudPbxSettings(_Model):
    kind: Literal["cloudpbx"] = "cloudpbx"
    api_url: str | None = Field(
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
        return _expand(value)

    @field_validator("crm_tokens", mode="before")
    @classmethod
    def _tokens_env(cls, value: Any) -> Any:
        return [_expand(v) for v in value] if isinstance(value, list) else value


class UserMapping(_Model):
    pbx_user: str = Field(min_length=1, max_length=256)
    name: str | None = None
    extension: str | None = None


class ContactEntry(_Model):
    name: str = Field(min_length=1, max_length=512)
    phones: list[str] = Field(min_length=1)
    responsible: str | None = None
    id: str | None = None


MINICRM_IPS = ("195.228.75.210", "195.228.75.211")  # MiniCRM's documented downloader IPs (specs/minicrm.md)


class BasicAuth(_Model):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[^:\s]+$")
    password: Secret

    @field_validator("username", "password", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return _expand(value)


class RecordingsSettings(_Model):
    basic_auth: BasicAuth | None = Field(
        default=None,
        description="Credentials of the MiniCRM-style URL (…/recordings?Rec=…); without them it answers 401",
    )
    allowed_ips: list[str] = Field(
        default_factory=list,
        description="Source IPs or CIDRs allowed on the basic-auth URL; empty: any. MiniCRM: " + ", ".join(MINICRM_IPS),
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Recording hosts trusted even on private addresses or plain http (exact names or IPs)",
    )
    serve_direct: bool = Field(
        default=False,
        description="Answer small recordings (≤ 4 MiB) with the audio itself instead of a redirect",
    )

    @field_validator("allowed_ips")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or CIDR: {entry!r}") from None
        return value

    @field_validator("allow_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        from callbridge.recordings.netguard import normalize_hosts

        normalize_hosts(value)  # raises ValueError on a malformed host
        return value


class AccountConfig(_Model):
    account: str
    name: str | None = None
    timezone: str = "UTC"
    phone_region: str = Field(description="ISO country code for numbers that arrive without one, e.g. RU")
    pbx: CloudPbxSettings
    users: list[UserMapping] = Field(default_factory=list)
    contacts: list[ContactEntry] = Field(default_factory=list)
    recordings: RecordingsSettings = Field(default_factory=RecordingsSettings)

    @field_validator("account")
    @classmethod
    def _account_id(cls, value: str) -> str:
        if not ACCOUNT_ID.match(value):
            raise ValueError("lower-case letters, digits, '-' and '_', starting with a letter or digit, ≤ 63")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("phone_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = value.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}")
        return region

    def public(self) -> dict[str, Any]:
        """The config without secrets, as stored in DynamoDB."""
        data = self.model_dump(
            mode="json",
            exclude={"contacts": True, "pbx": {"token", "crm_tokens"}, "recordings": {"basic_auth"}},
        )
        return data


def load_account_file(path: Path) -> AccountConfig:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return AccountConfig.model_validate(data)
