"""The amoCRM / Kommo part of an account file (docs/kommo.md)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from callbridge.core.config import (
    CallbackSettings,
    CrmSettings,
    DeliveryMode,
    Model,
    PeerUrl,
    Secret,
    UserFields,
    expand_env,
)

# A long-lived token is a JWT of some hundreds of characters, longer than the shared Secret allows.
LongToken = Annotated[SecretStr, Field(min_length=8, max_length=4096)]
# https://{subdomain}.amocrm.ru | https://{subdomain}.kommo.com: scheme and host, no path.
ACCOUNT_URL = r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?$"


class KommoApp(Model):
    """An integration's OAuth credentials (Settings → Integrations → the integration → "Keys and
    scopes"). The tokens are not here: `callbridge kommo authorize` puts the first ones in SSM and
    the connector keeps them refreshed there (docs/kommo.md, "OAuth")."""

    client_id: str = Field(pattern=r"^[A-Za-z0-9-]{8,64}$", description="The integration ID; not a secret")
    client_secret: Secret = Field(description="The integration's secret key (kept in SSM)")
    # Not an address we call: amoCRM checks that the exchange names the integration's own.
    redirect_uri: str = Field(
        pattern=r"^https://\S+$", max_length=512, description="The integration's redirect URL, as entered in amoCRM"
    )

    @field_validator("client_secret", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)


class KommoCallbacks(CallbackSettings):
    """Callback tasks (type "call") on the caller's contact or incoming lead, for the missed-call
    owner (docs/kommo.md, "Callback tasks"; docs/missed-calls.md)."""


class KommoSettings(CrmSettings):
    """amoCRM / Kommo through a private integration's long-lived token or an integration's OAuth
    tokens (docs/kommo.md): exactly one of `token` and `app`."""

    kind: Literal["kommo"] = "kommo"
    name: str = Field(default="kommo", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Destination id")
    base_url: PeerUrl = Field(
        pattern=ACCOUNT_URL,
        description="The account's address: https://{subdomain}.amocrm.ru or https://{subdomain}.kommo.com",
    )
    token: LongToken | None = Field(
        default=None, description="A private integration's long-lived token (kept in SSM); or `app`"
    )
    app: KommoApp | None = Field(default=None, description="An integration's OAuth credentials; or `token`")
    mode: DeliveryMode = "realtime"
    unknown_numbers: Literal["lead", "skip"] = Field(
        default="lead",
        description="lead: an unknown caller becomes an incoming lead in unsorted (an outgoing call's number a "
        "contact), the call attached; skip: such calls are not stored",
    )
    source: str = Field(
        default="CallBridge", min_length=1, max_length=64, description="The calls' `source` shown in amoCRM"
    )
    pipeline_id: int | None = Field(default=None, description="The pipeline of the incoming leads (default: main)")
    notifications: bool = Field(default=True, description="Notify the ringing managers (amoCRM's call pop-up)")
    default_user_id: int | None = Field(default=None, description="The amoCRM user of calls of unmapped PBX users")
    callbacks: KommoCallbacks = Field(default_factory=KommoCallbacks)

    # The optional capabilities amoCRM offers (callbridge.crm.base).
    responsible_lookup: ClassVar[bool] = True

    @property
    def live_cards(self) -> bool:
        return self.notifications

    @property
    def callback_tasks(self) -> bool:
        return self.callbacks.enabled

    @property
    def host(self) -> str:
        return self.base_url.split("://", 1)[1]

    @field_validator("token", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)

    @model_validator(mode="after")
    def _one_way(self) -> KommoSettings:
        # Two identities would file calls under two users' rights: the account file picks one.
        if (self.token is None) == (self.app is None):
            raise ValueError("set exactly one of token (a long-lived token) and app (an integration's OAuth keys)")
        return self


class KommoUser(UserFields):
    """Who a PBX user is in amoCRM: the user's ID (Settings → Users, or `callbridge kommo users`)."""

    kommo_user_id: int | None = Field(default=None, description="The user's ID in amoCRM / Kommo")


SETTINGS = KommoSettings
USER_FIELDS = KommoUser
