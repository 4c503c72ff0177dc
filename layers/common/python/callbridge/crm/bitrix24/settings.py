"""The Bitrix24 part of an account file (docs/bitrix24.md)."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from callbridge.core.config import (
    PEER_URL,
    STORED_SECRET,
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

# https://{portal}/rest/{user id}/{code}/ : the portal's inbound webhook, as Bitrix24 shows it.
WEBHOOK_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?/rest/\d+/[A-Za-z0-9_-]{6,}/?$")
PORTAL_URL = r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?$"  # https://{portal}: no path, no trailing slash
OAUTH_URL = "https://oauth.bitrix.info"  # Bitrix24's OAuth server, the same for every portal


class Bitrix24App(Model):
    """A local application of the portal (Developer resources → Other → Local application, "uses
    only API"): its OAuth credentials. The tokens are not here: `callbridge bitrix24 authorize`
    puts the first ones in SSM and the connector keeps them refreshed there (docs/bitrix24.md)."""

    portal: PeerUrl = Field(
        pattern=PORTAL_URL, description="The portal, https://{portal} (the REST calls go to its /rest/)"
    )
    client_id: str = Field(
        pattern=r"^[A-Za-z0-9._-]{4,128}$", description="The application's client_id (local.…); not a secret"
    )
    client_secret: Secret = Field(description="The application's client_secret (kept in SSM)")
    member_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9]{8,64}$",
        description="The portal's member_id: when set, tokens of any other portal are refused",
    )
    oauth_url: PeerUrl = Field(
        default=OAUTH_URL, pattern=PORTAL_URL, description="Bitrix24's OAuth server (tests: a fake one)"
    )

    @field_validator("client_secret", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)

    @property
    def domain(self) -> str:
        """The portal's host[:port], as the tokens' client_endpoint names it."""
        return self.portal.split("://", 1)[1]


class Bitrix24Callbacks(CallbackSettings):
    """Callback to-dos (`crm.activity.todo.add`) on the caller's contact, company or lead, for its
    responsible user (docs/bitrix24.md, "Callback to-dos"; docs/missed-calls.md)."""

    mode: Literal["off", "all", "unknown_numbers"] = Field(
        default="off",
        description="all: a to-do for every missed caller Bitrix24 has a contact, company or lead for; "
        "unknown_numbers: only for callers without a contact or company (a lead, e.g. the one crm_create "
        "made, is still unknown); off: none",
    )


class Bitrix24Settings(CrmSettings):
    """Bitrix24 telephony through an inbound webhook or a local application's OAuth tokens
    (docs/bitrix24.md): exactly one of `webhook_url` and `app`."""

    kind: Literal["bitrix24"] = "bitrix24"
    name: str = Field(default="bitrix24", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Destination id")
    # A secret and an address: checked against trusted_hosts like every PeerUrl (core/config.py).
    webhook_url: Annotated[Secret, PEER_URL] | None = Field(
        default=None,
        description="The portal's inbound webhook, https://{portal}/rest/{user}/{code}/, with the telephony, "
        "crm and user scopes (its code is a secret: kept in SSM); or `app`",
    )
    app: Bitrix24App | None = Field(
        default=None, description="A local application's OAuth credentials (Bitrix24App); or `webhook_url`"
    )
    application_token: WebhookToken | None = Field(
        default=None,
        description="The application_token Bitrix24 sends with OnExternalCallStart (click-to-call); "
        "without it click-to-call is refused",
    )
    mode: DeliveryMode = "realtime"
    call_cards: bool = Field(default=True, description="Show the call card to the ringing managers")
    crm_create: bool = Field(default=True, description="Bitrix24 creates a lead for a number it does not know")
    default_user_id: int | None = Field(default=None, description="USER_ID for calls of unmapped PBX users")
    line_number: str | None = Field(default=None, max_length=64, description="LINE_NUMBER shown for our calls")
    callbacks: Bitrix24Callbacks = Field(default_factory=Bitrix24Callbacks)

    # The optional capabilities Bitrix24 offers (callbridge.crm.base).
    responsible_lookup: ClassVar[bool] = True
    click_to_call_secret: ClassVar[str] = "application_token"

    @property
    def live_cards(self) -> bool:
        return self.call_cards

    @property
    def callback_tasks(self) -> bool:
        return self.callbacks.enabled

    @field_validator("webhook_url", "application_token", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)

    @model_validator(mode="after")
    def _one_way(self) -> Bitrix24Settings:
        # Two ways to call the portal would mean two identities and two places a call could be
        # filed from: the account file picks one.
        if (self.webhook_url is None) == (self.app is None):
            raise ValueError(
                "set exactly one of webhook_url (an inbound webhook) and app (a local application's "
                "client_id and client_secret)"
            )
        return self

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, value: Any) -> Any:
        if value is None:
            return value
        text = value.get_secret_value()
        if text != STORED_SECRET and not WEBHOOK_URL.match(text):
            # The message names the expected shape, never the value (it holds the webhook's code).
            raise ValueError("must be the portal's inbound webhook URL, https://{portal}/rest/{user id}/{code}/")
        return value


class Bitrix24User(UserFields):
    """Who a PBX user is in Bitrix24: the user's ID, or the inner phone number (docs/bitrix24.md)."""

    bitrix24_user_id: int | None = Field(default=None, description="The user's ID in Bitrix24 (USER_ID)")
    bitrix24_inner_phone: str | None = Field(
        default=None,
        max_length=32,
        description="The user's inner phone in Bitrix24 (USER_PHONE_INNER); default: extension",
    )


SETTINGS = Bitrix24Settings
USER_FIELDS = Bitrix24User
