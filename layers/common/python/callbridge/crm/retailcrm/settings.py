"""The retailCRM part of an account file."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from callbridge.core.config import (
    CallbackSettings,
    CrmSettings,
    DeliveryMode,
    Model,
    PeerUrl,
    Secret,
    UserFields,
    WebhookToken,
    expand_env,
)


class ExternalPhone(Model):
    site_code: str
    external_phone: str


class RetailCrmCallbacks(CallbackSettings):
    """Callback tasks in retailCRM (`tasks/create`), and customers for numbers it does not know."""

    create_customers: bool = Field(
        default=False,
        description="A missed call from, or an outgoing call to, a number retailCRM does not know creates "
        "a customer with that phone, assigned to the missed-call owner (the callback task is linked to it)",
    )


class RetailCrmSettings(CrmSettings):
    """retailCRM telephony module (docs/retailcrm.md)."""

    kind: Literal["retailcrm"] = "retailcrm"
    name: str = Field(default="retailcrm", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Destination id")
    base_url: PeerUrl = Field(description="https://{account}.retailcrm.ru")
    api_key: Secret = Field(description="API key with the telephony and integration scopes")
    client_id: WebhookToken = Field(description="clientId we register; retailCRM presents it on makeCallUrl")
    module_code: str = Field(default="callbridge", pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    site: str | None = Field(default=None, description="Shop code for uploaded calls")
    mode: DeliveryMode = "realtime"
    call_events: bool = Field(default=True, description="Send call cards (in) and hangups as they happen")
    default_user_id: int | None = Field(default=None, description="userId for calls of unmapped PBX users")
    call_notes: bool = Field(
        default=True,
        description="Write the notes a PBX keeps on a call (ccrm.pl) to the caller's customer card; "
        "the API key then needs the customers scope",
    )
    external_phones: list[ExternalPhone] = Field(default_factory=list)
    callbacks: RetailCrmCallbacks = Field(default_factory=RetailCrmCallbacks)

    # The optional capabilities retailCRM offers (callbridge.crm.base).
    responsible_lookup: ClassVar[bool] = True
    click_to_call_secret: ClassVar[str] = "client_id"
    module_registration: ClassVar[bool] = True

    @property
    def live_cards(self) -> bool:
        return self.call_events

    @property
    def callback_tasks(self) -> bool:
        return self.callbacks.enabled or self.callbacks.create_customers

    @field_validator("api_key", "client_id", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)


class RetailCrmUser(UserFields):
    """Who a PBX user is in retailCRM: the manager's `userId` and extension `code` (docs/retailcrm.md)."""

    retailcrm_user_id: int | None = Field(default=None, description="The manager's userId in retailCRM")
    retailcrm_code: str | None = Field(default=None, description="Extension code in retailCRM; default: extension")


SETTINGS = RetailCrmSettings
USER_FIELDS = RetailCrmUser
