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
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from callbridge.core.accounts import ACCOUNT_ID

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
# Webhook tokens are verified against SHA-256 digests (callbridge.core.accounts): they must be long random
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


class TelediscountSettings(_Model):
    """telediscount (specs/telediscount.md): it GETs our webhook URLs; we GET its API."""

    kind: Literal["telediscount"] = "telediscount"
    api_url: str = Field(
        default="https://my.telediscount.ru/api.php/telephony",
        description="Base of the PBX API (outcome, get_calls, get_record)",
    )
    api_key: Secret = Field(description="abonent_api_key from the PBX cabinet")
    webhook_secret: WebhookToken = Field(description="Secret path segment of our webhook URLs")

    @field_validator("api_key", "webhook_secret", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return _expand(value)


class CcrmSettings(_Model):
    """ccrm.pl (specs/ccrm.md): a read-only API we poll."""

    kind: Literal["ccrm"] = "ccrm"
    base_url: str = Field(description="https://{name}.ccrm.pl")
    api_key: Secret = Field(description="Bearer API key")
    import_sms: bool = Field(default=False, description="Store SMS records (never as calls)")
    import_fax: bool = Field(default=False, description="Store FAX records (never as calls)")

    @field_validator("api_key", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return _expand(value)


PbxSettings = Annotated[CloudPbxSettings | TelediscountSettings | CcrmSettings, Field(discriminator="kind")]

DeliveryMode = Literal["realtime", "batch"]


class MiniCrmSettings(_Model):
    """MiniCRM call log (specs/minicrm.md)."""

    kind: Literal["minicrm"] = "minicrm"
    name: str = Field(default="minicrm", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Destination id")
    base_url: str = Field(default="https://r3.minicrm.io", description="Without /Api/CallLog")
    api_key: Secret = Field(description="The VOIP ApiKey (MiniCRM / Settings / System)")
    mode: DeliveryMode = Field(default="batch", description="realtime: right after each call; batch: by schedule")
    number_format: Literal["e164", "national"] = "e164"
    default_user_extension: str | None = Field(
        default=None, description="UserExtension for calls of PBX users without a MiniCRM mapping"
    )

    @field_validator("api_key", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return _expand(value)


class ExternalPhone(_Model):
    site_code: str
    external_phone: str


class RetailCrmSettings(_Model):
    """retailCRM telephony module (specs/retailcrm.md)."""

    kind: Literal["retailcrm"] = "retailcrm"
    name: str = Field(default="retailcrm", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Destination id")
    base_url: str = Field(description="https://{account}.retailcrm.ru")
    api_key: Secret = Field(description="API key with the telephony and integration scopes")
    client_id: WebhookToken = Field(description="clientId we register; retailCRM presents it on makeCallUrl")
    module_code: str = Field(default="callbridge", pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    site: str | None = Field(default=None, description="Shop code for uploaded calls")
    mode: DeliveryMode = "realtime"
    call_events: bool = Field(default=True, description="Send call cards (in) and hangups as they happen")
    default_user_id: int | None = Field(default=None, description="userId for calls of unmapped PBX users")
    external_phones: list[ExternalPhone] = Field(default_factory=list)

    @field_validator("api_key", "client_id", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return _expand(value)


CrmSettings = Annotated[MiniCrmSettings | RetailCrmSettings, Field(discriminator="kind")]


class UserMapping(_Model):
    """One PBX user and who they are in every other system. Unmapped users are never guessed."""

    pbx_user: str = Field(min_length=1, max_length=256, description="As the PBX sends it in `user`")
    name: str | None = None
    extension: str | None = Field(default=None, description="Internal number (retailCRM code by default)")
    sip_account: str | None = Field(default=None, description="telediscount SIP account, e.g. SIP/00000000672")
    ccrm_internal: str | None = Field(default=None, description="ccrm.pl userTalk.receivers[].internal")
    retailcrm_user_id: int | None = None
    retailcrm_code: str | None = Field(default=None, description="Extension code in retailCRM; default: extension")
    minicrm_extension: str | None = Field(default=None, description="MiniCRM UserExtension; default: extension")


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
        from callbridge.infra.netguard import normalize_hosts

        normalize_hosts(value)  # raises ValueError on a malformed host
        return value


class AccountConfig(_Model):
    account: str
    name: str | None = None
    timezone: str = "UTC"
    phone_region: str = Field(description="ISO country code for numbers that arrive without one, e.g. RU")
    pbx: PbxSettings
    crms: list[CrmSettings] = Field(default_factory=list)
    users: list[UserMapping] = Field(default_factory=list)
    contacts: list[ContactEntry] = Field(default_factory=list)
    recordings: RecordingsSettings = Field(default_factory=RecordingsSettings)
    api_keys: list[WebhookToken] = Field(
        default_factory=list,
        max_length=2,
        description="Bearer keys of POST /v1/{account}/calls (click-to-call for any CRM or script). "
        "The first is current; a second stays valid during a rotation. Empty: that endpoint is closed.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys_env(cls, value: Any) -> Any:
        return [_expand(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="before")
    @classmethod
    def _ccrm_timezone(cls, data: Any) -> Any:
        # ccrm.pl answers in the account's local time and is a Polish service (specs/ccrm.md):
        # Europe/Warsaw unless the file names a time zone.
        if isinstance(data, dict) and "timezone" not in data:
            pbx = data.get("pbx")
            if isinstance(pbx, dict) and pbx.get("kind") == "ccrm":
                return {**data, "timezone": "Europe/Warsaw"}
        return data

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

    @model_validator(mode="after")
    def _unique_crm_names(self) -> AccountConfig:
        names = [crm.name for crm in self.crms]
        if len(names) != len(set(names)):
            raise ValueError("every CRM of an account needs its own name")
        return self

    def crm(self, name: str) -> MiniCrmSettings | RetailCrmSettings | None:
        return next((crm for crm in self.crms if crm.name == name), None)

    @classmethod
    def from_stored(cls, account_id: str, stored: dict[str, Any]) -> AccountConfig:
        """The typed view of a config as `public()` stored it: the secrets it left out or masked
        become placeholders that are never a usable secret (the real ones are read from SSM)."""
        data = _unmask(dict(stored))
        data.setdefault("account", account_id)
        pbx = data.get("pbx")
        if isinstance(pbx, dict) and pbx.get("kind", "cloudpbx") == "cloudpbx":
            data["pbx"] = {**pbx, "crm_tokens": [STORED_SECRET]}
        return cls.model_validate(data)

    def public(self) -> dict[str, Any]:
        """The config without secrets, as stored in DynamoDB."""
        data = self.model_dump(
            mode="json",
            exclude={
                "contacts": True,
                "pbx": {"token", "crm_tokens"},
                "recordings": {"basic_auth"},
                "api_keys": True,
            },
        )
        return data


MASK = "**********"  # how pydantic dumps a SecretStr into the stored (public) config
STORED_SECRET = "<kept in SSM parameter store>"  # stands in for a secret in the typed stored view


def _unmask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unmask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unmask(v) for v in value]
    return STORED_SECRET if value == MASK else value


def load_account_file(path: Path) -> AccountConfig:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return AccountConfig.model_validate(data)
