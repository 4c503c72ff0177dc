"""The ccrm.pl part of an account file."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from callbridge.core.config import PbxSettings, PeerUrl, Secret, UserFields, expand_env


class CcrmSettings(PbxSettings):
    """ccrm.pl (docs/ccrm.md): a read-only API we poll."""

    # ccrm.pl answers in the account's local time and serves Polish companies.
    default_timezone: ClassVar[str | None] = "Europe/Warsaw"

    kind: Literal["ccrm"] = "ccrm"
    base_url: PeerUrl = Field(description="https://{name}.ccrm.pl")
    api_key: Secret = Field(description="Bearer API key")
    import_sms: bool = Field(default=False, description="Store SMS records (never as calls)")
    import_fax: bool = Field(default=False, description="Store FAX records (never as calls)")

    @field_validator("api_key", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)


class CcrmUser(UserFields):
    """Who a PBX user is on ccrm.pl: the `internal` number its call history names (docs/ccrm.md)."""

    ccrm_internal: str | None = Field(default=None, description="ccrm.pl userTalk.receivers[].internal")


SETTINGS = CcrmSettings
USER_FIELDS = CcrmUser
