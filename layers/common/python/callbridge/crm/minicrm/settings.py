"""The MiniCRM part of an account file."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self

from pydantic import Field, field_validator, model_validator

from callbridge.core.config import CallbackSettings, CrmSettings, DeliveryMode, PeerUrl, Secret, UserFields, expand_env

MINICRM_IPS = ("195.228.75.210", "195.228.75.211")  # MiniCRM's documented downloader IPs (docs/minicrm.md)


class MiniCrmCallbacks(CallbackSettings):
    """Callback tasks (ToDo) on the caller's card, through MiniCRM's general API (docs/missed-calls.md)."""

    mode: Literal["off", "all"] = Field(
        default="off",
        description="all: a ToDo on the caller's card for every missed caller MiniCRM knows; off: none "
        "(an unknown number has no card to put a ToDo on: unknown_numbers is not offered)",
    )
    todo_type: str | None = Field(default=None, description="The ToDo's Type as your MiniCRM names it (e.g. a call)")
    default_user_id: int | None = Field(
        default=None, description="MiniCRM user id of ToDos whose owner has no minicrm_user_id"
    )


class MiniCrmSettings(CrmSettings):
    """MiniCRM call log (docs/minicrm.md)."""

    kind: Literal["minicrm"] = "minicrm"
    # "MiniCRM can download and play mp3 recordings ... we will download the files" (its VOIP API):
    # from the URL template, when it saves the call; a saved record is never updated.
    downloads_recording_on_receipt: ClassVar[bool] = True
    name: str = Field(default="minicrm", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Destination id")
    base_url: PeerUrl = Field(default="https://r3.minicrm.io", description="Without /Api/CallLog")
    api_key: Secret = Field(description="The VOIP ApiKey (MiniCRM / Settings / System)")
    mode: DeliveryMode = Field(default="batch", description="realtime: right after each call; batch: by schedule")
    # National by default: MiniCRM's own examples send `Number` national with the trunk prefix
    # (`0620123456`), and MiniCRM must find the number among contacts its users typed that way.
    number_format: Literal["e164", "national"] = Field(
        default="national",
        description="national: numbers of the account's phone_region as dialled there (0620123456), "
        "others in E.164; e164: every number in E.164 (+36201234567)",
    )
    default_user_extension: str | None = Field(
        default=None, description="UserExtension for calls of PBX users without a MiniCRM mapping"
    )

    system_id: int | None = Field(default=None, description="MiniCRM system id, for the general API (callbacks)")
    general_api_key: Secret | None = Field(
        default=None, description="MiniCRM's general API key (not the VOIP key), for callback tasks"
    )
    callbacks: MiniCrmCallbacks = Field(default_factory=MiniCrmCallbacks)

    @field_validator("api_key", "general_api_key", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)

    @model_validator(mode="after")
    def _callbacks_need_the_general_api(self) -> Self:
        if self.callbacks.enabled and (self.system_id is None or self.general_api_key is None):
            raise ValueError("callbacks need system_id and general_api_key (MiniCRM's general API)")
        return self

    @property
    def callback_tasks(self) -> bool:
        return self.callbacks.enabled


class MiniCrmUser(UserFields):
    """Who a PBX user is in MiniCRM: the UserExtension its call log takes (docs/minicrm.md)."""

    minicrm_extension: str | None = Field(default=None, description="MiniCRM UserExtension; default: extension")
    minicrm_user_id: int | None = Field(default=None, description="MiniCRM user id: whom callback ToDos are for")


SETTINGS = MiniCrmSettings
USER_FIELDS = MiniCrmUser
