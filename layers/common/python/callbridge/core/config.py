"""The account config file (docs/accounts.md): one YAML file per account, validated here.

Secrets may be written literally or as `${ENV_VAR}` references; either way they go to SSM
Parameter Store when the file is applied, never to DynamoDB or a log.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, cast, get_args
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from callbridge.core import catalog, retention
from callbridge.store.keys import ACCOUNT_ID

_ModelT = TypeVar("_ModelT", bound=BaseModel)

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def expand_env(value: Any) -> Any:
    if isinstance(value, str):
        match = _ENV_REF.match(value.strip())
        if match:
            name = match.group(1)
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set")
            return os.environ[name]
    return value


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Secret = Annotated[SecretStr, Field(min_length=8, max_length=256)]
# Webhook tokens are verified against SHA-256 digests (callbridge.core.accounts): they must be long random
# strings, not passwords a person picks.
WebhookToken = Annotated[SecretStr, Field(min_length=16, max_length=256)]


DeliveryMode = Literal["realtime", "batch"]


class _PeerUrlMarker:
    """Marks a settings field as the address of a CRM or PBX API we send requests (and keys) to:
    AccountConfig checks it against the account's `trusted_hosts` (`_check_peer_urls`)."""


PEER_URL = _PeerUrlMarker()


def _peer_url_syntax(value: str) -> str:
    # What no trust lifts: another scheme (file://, gopher://), credentials, a malformed host or port.
    import httpx

    from callbridge.infra.netguard import PermanentFetchError, ShorthandAddress, check_url, host_key, normalize_host

    try:
        parsed = httpx.URL(value)
    except (httpx.InvalidURL, TypeError):
        raise ValueError("not a URL") from None
    if parsed.scheme not in ("https", "http"):
        raise ValueError(f"scheme {parsed.scheme or '(none)'!r} is not allowed: https only")
    try:
        host = normalize_host(parsed.raw_host.decode("ascii"))
    except ShorthandAddress as exc:
        raise ValueError(str(exc)) from None  # an address with two spellings: no trust lifts it
    except (ValueError, UnicodeError):
        raise ValueError("not a URL with a valid host") from None
    try:
        # Checked as if the host were trusted: only what trust cannot lift is refused here.
        check_url(parsed, frozenset({host_key(host, parsed.port or (443 if parsed.scheme == "https" else 80))}))
    except PermanentFetchError as exc:
        raise ValueError(str(exc)) from None
    if parsed.query or parsed.fragment:
        raise ValueError("a base address takes no query or fragment")
    return value


def _is_peer_url(annotation: Any, metadata: list[Any]) -> bool:
    """Whether a field is typed PeerUrl (also as `PeerUrl | None`)."""
    if PEER_URL in metadata:
        return True
    return any(PEER_URL in getattr(arg, "__metadata__", ()) for arg in get_args(annotation))


# The address of a CRM or PBX API (a package's `base_url`, `api_url`): http(s) without credentials
# here; https and a public address unless the account lists its host:port in `trusted_hosts`, checked
# when the account is applied (AccountConfig) and again on every connection (infra.netguard).
PeerUrl = Annotated[str, AfterValidator(_peer_url_syntax), PEER_URL]


def _peer_urls(model: BaseModel, loc: tuple[str | int, ...]) -> list[tuple[tuple[str | int, ...], str, str]]:
    """The PeerUrl fields of a settings section and of its sub-sections (Bitrix24's `app`), as
    (location, URL, URL as an error may show it). A URL that holds a secret (an inbound webhook's
    code, a SecretStr field) is checked like any other but shown as its scheme and host only; a
    placeholder of a stored secret (a config read back from the store) is not a URL to check."""
    found: list[tuple[tuple[str | int, ...], str, str]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += _peer_urls(value, (*loc, name))
        elif _is_peer_url(field.annotation, field.metadata):
            if isinstance(value, str):
                found.append(((*loc, name), value, value))
            elif isinstance(value, SecretStr) and value.get_secret_value() != STORED_SECRET:
                raw = value.get_secret_value()
                parts = urlsplit(raw)
                found.append(((*loc, name), raw, f"{parts.scheme}://{parts.netloc}/…"))
    return found


def peer_url_problem(url: str, trusted: frozenset[str]) -> str | None:
    """Why the account may not send requests to `url` (None: it may). `trusted` is normalize_hosts()
    of the account's trusted_hosts. Without I/O: a hostname that resolves to a private address is
    refused on connect (infra.netguard.GuardedBackend)."""
    from callbridge.infra.netguard import PermanentFetchError, check_url, host_key, normalize_host

    try:
        parsed = check_url(url, trusted)
    except PermanentFetchError as exc:
        return str(exc)
    host = normalize_host(parsed.raw_host.decode("ascii"))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if host_key(host, port) not in trusted and (host == "localhost" or host.endswith(".localhost")):
        return f"{host} is loopback"  # RFC 6761: always the local machine, whatever DNS says
    return None


class PbxSettings(Model):
    """What every PBX adapter's settings share. Each adapter (callbridge.pbx.*) subclasses it with its
    own fields and a `kind` literal; the account file's `pbx.kind` picks the adapter from
    callbridge.registry, and that adapter's model validates the rest."""

    kind: str
    _trusted_hosts: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def trusted_hosts(self) -> frozenset[str]:
        """The account's trusted_hosts (normalised), for the package's HTTP clients (infra.http)."""
        return self._trusted_hosts

    @classmethod
    def stored_placeholders(cls) -> dict[str, Any]:
        """Values for the fields the stored config leaves out (`stored_without`), so that it parses."""
        return {}

    # Time zone of an account whose file names none (a PBX that reports local times, e.g. Europe/Warsaw).
    default_timezone: ClassVar[str | None] = None
    # Fields never stored in the account item (secrets kept in SSM only, not even masked).
    stored_without: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="wrap")
    @classmethod
    def _by_kind(cls, value: Any, handler: ModelWrapValidatorHandler[PbxSettings]) -> PbxSettings:
        if cls is PbxSettings and isinstance(value, dict):
            return pbx_settings_model(str(value.get("kind", ""))).model_validate(value)
        return handler(value)


class CrmSettings(Model):
    """What every CRM connector's settings share (callbridge.crm.*): its kind, the destination's name
    within the account, and how calls go out. `crms[].kind` picks the connector from
    callbridge.registry."""

    kind: str
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", description="Destination id")
    mode: DeliveryMode = Field(default="batch", description="realtime: right after each call; batch: by schedule")
    _trusted_hosts: frozenset[str] = PrivateAttr(default=frozenset())
    # The CRM downloads a call's recording from our link as soon as it has the call, and takes no
    # later update (MiniCRM, docs/minicrm.md): a realtime call whose recording is still being fetched
    # is held for it (docs/delivery.md, "Recordings and realtime calls"). A CRM that plays the link
    # only when someone asks, or takes the file as an update (Bitrix24), gets the call at once.
    downloads_recording_on_receipt: ClassVar[bool] = False

    @property
    def trusted_hosts(self) -> frozenset[str]:
        """The account's trusted_hosts (normalised), for the connector's HTTP clients (infra.http)."""
        return self._trusted_hosts

    @model_validator(mode="wrap")
    @classmethod
    def _by_kind(cls, value: Any, handler: ModelWrapValidatorHandler[CrmSettings]) -> CrmSettings:
        if cls is CrmSettings and isinstance(value, dict):
            data = value if value.get("name") else {**value, "name": value.get("kind")}
            return crm_settings_model(str(value.get("kind", ""))).model_validate(data)
        return handler(value)


# The core declares only what every adapter shares. A PBX or CRM package that needs more of a user
# (its id or code in that system) declares it as `USER_FIELDS`, a UserFields model in its settings
# module, and reads it with `TheModel.of(user)`: the account file keeps those fields at the same place
# (`users: [{pbx_user: andy, <package field>: …}]`), and a new connector adds its own without editing
# this class. A key no registered package declares is refused, as a typo should be.
class UserMapping(Model):
    """One PBX user and who they are in every other system. Unmapped users are never guessed."""

    # The packages' fields are kept as extras, validated against their models by `_package_fields`.
    model_config = ConfigDict(extra="allow", frozen=True)

    pbx_user: str = Field(min_length=1, max_length=256, description="As the PBX sends it in `user`")
    name: str | None = None
    extension: str | None = Field(
        default=None, description="Internal number; the default of a package's own extension or code field"
    )

    @model_validator(mode="wrap")
    @classmethod
    def _package_fields(cls, value: Any, handler: ModelWrapValidatorHandler[UserMapping]) -> UserMapping:
        if isinstance(value, dict):
            extra = {k: v for k, v in value.items() if k not in cls.model_fields}
            if extra:
                # Validating the extras as one model of every package's fields (extra="forbid") keeps
                # pydantic's own errors and their location: users.0.<field>, "Extra inputs are not
                # permitted" for a field nobody declares.
                try:
                    checked = _package_fields_model(user_field_models(extra)).model_validate(extra)
                except ValidationError as error:
                    # Every error of the entry at once, the shared fields' first, as one model gave them.
                    raise ValidationError.from_exception_data(
                        cls.__name__, [*_errors_of(handler, _without(value, extra)), *_details(error)]
                    ) from None
                value = {**value, **{k: getattr(checked, k) for k in extra}}
        return handler(value)


def _without(value: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if k not in keys}


def _details(error: ValidationError) -> list[InitErrorDetails]:
    return [
        InitErrorDetails(type=e["type"], loc=e["loc"], input=e["input"], ctx=e.get("ctx", {}))
        for e in error.errors(include_url=False)
    ]


def _errors_of(handler: ModelWrapValidatorHandler[UserMapping], value: dict[str, Any]) -> list[InitErrorDetails]:
    try:
        handler(value)
    except ValidationError as error:
        return _details(error)
    return []


class UserFields(Model):
    """A PBX or CRM package's own fields of a user mapping (`USER_FIELDS` in its settings module):
    optional, each with a default, named so that no other package would pick the same name (e.g.
    `<kind>_user_id`)."""

    @classmethod
    def of(cls, user: UserMapping) -> Self:
        """This package's fields of `user`. They were validated with this model when the mapping was,
        so they are taken as they are (read on the contact path: no second validation)."""
        extra = user.model_extra or {}
        # (cast: the pydantic mypy plugin types model_construct as returning the declaring class)
        return cast(Self, cls.model_construct(**{k: extra[k] for k in cls.model_fields if k in extra}))


# One per set of models: a few per container at most (the account's own packages', all of them).
@functools.cache
def _package_fields_model(models: tuple[type[UserFields], ...]) -> type[UserFields]:
    """One model with the fields of every package's USER_FIELDS (extra="forbid")."""
    owner: dict[str, type[UserFields]] = {}
    for model in models:
        for field in model.model_fields:
            if field in UserMapping.model_fields:
                raise TypeError(f"{model.__qualname__}.{field} is a shared field of UserMapping, not a package's")
            if field in owner:
                # Two packages reading one key would each give it their own meaning and type.
                raise TypeError(
                    f"user field {field!r} is declared by {owner[field].__qualname__} and {model.__qualname__}"
                )
            owner[field] = model
    # (cast: mypy types a model created from several bases as a new class, not as their base)
    return cast("type[UserFields]", create_model("PackageUserFields", __base__=models or (UserFields,)))


# The registry's lookups, handed to the core (core/catalog.py) and checked here: a registry line whose
# package names the wrong kind of model fails with its kind, not somewhere inside a validation.
def pbx_settings_model(kind: str) -> type[PbxSettings]:
    """The settings model of the PBX package of `kind`; a ValueError (registry.UnknownKind) for a kind
    no registry line names."""
    return _checked(catalog.installed().pbx_settings_model(kind), PbxSettings, kind)


def crm_settings_model(kind: str) -> type[CrmSettings]:
    """The settings model of the CRM package of `kind`, as pbx_settings_model."""
    return _checked(catalog.installed().crm_settings_model(kind), CrmSettings, kind)


def user_field_models(claiming: Iterable[str] | None = None) -> tuple[type[UserFields], ...]:
    """The packages' USER_FIELDS models (registry.user_field_models: all, or enough to declare `claiming`)."""
    return tuple(_checked(m, UserFields, "USER_FIELDS") for m in catalog.installed().user_field_models(claiming))


def _checked(model: type[Any], base: type[_ModelT], what: str) -> type[_ModelT]:
    if not (isinstance(model, type) and issubclass(model, base)):
        raise TypeError(f"the registry's model for {what!r} is not a {base.__name__}")
    return model


class ContactEntry(Model):
    name: str = Field(min_length=1, max_length=512)
    phones: list[str] = Field(min_length=1)
    responsible: str | None = None
    id: str | None = None


class BasicAuth(Model):
    username: str = Field(min_length=1, max_length=128, pattern=r"^[^:\s]+$")
    password: Secret

    @field_validator("username", "password", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return expand_env(value)


class RecordingsSettings(Model):
    basic_auth: BasicAuth | None = Field(
        default=None,
        description="Credentials of the MiniCRM-style URL (…/recordings?Rec=…); without them it answers 401",
    )
    allowed_ips: list[str] = Field(
        default_factory=list,
        description="Source IPs or CIDRs allowed on the basic-auth URL; empty: any (a CRM's page names "
        "its downloader's addresses)",
    )
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Recording hosts trusted even on private addresses or plain http: host:port "
        "(a bare host: its ports 443 and 80)",
    )
    serve_direct: bool = Field(
        default=False,
        description="Answer small recordings (≤ 4 MiB) with the audio itself instead of a redirect",
    )
    retention_days: int | None = Field(
        default=None,
        description="Days this account's recordings are kept, one of the tiers 30, 90, 180, 365, 730, 1095, "
        "1825, 2555, 3650 (another value is refused, not rounded); unset: the stack's RecordingRetentionDays. "
        "A change holds for recordings stored from then on",
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

    @field_validator("retention_days")
    @classmethod
    def _tier(cls, value: int | None) -> int | None:
        # The bucket's lifecycle has one expiration rule per tier (core/retention.py).
        return None if value is None else retention.check_tier(value)

    @field_validator("allow_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        from callbridge.infra.netguard import normalize_hosts

        normalize_hosts(value)  # raises ValueError on a malformed entry
        return value


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


class CallbackSettings(Model):
    """Callback tasks for missed incoming calls, per CRM (a CRM package that can create tasks puts
    this, or a subclass with its own options, in its settings as `callbacks`)."""

    mode: Literal["off", "all", "unknown_numbers"] = Field(
        default="off",
        description="all: a task for every missed caller; unknown_numbers: only for numbers the CRM does not "
        "know; off: none (YAML's bare on / off mean all / off)",
    )
    hours: str | None = Field(
        default=None,
        description="Only calls missed within these hours, in the account's time zone: HH:MM-HH:MM (e.g. 09:00-18:00)",
    )
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), description="Only calls missed on these days")
    window_minutes: int = Field(
        default=10, ge=1, le=1440, description="Missed calls of one caller within this time are one task"
    )
    due_minutes: int = Field(default=30, ge=0, le=10080, description="The task is due this long after the call")

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_switch(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `on` / `off` as a boolean.
        if isinstance(value, bool):
            return "all" if value else "off"
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None and not _HOURS.match(value):
            raise ValueError("hours must be HH:MM-HH:MM, e.g. 09:00-18:00")
        return value

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


class MissedCallSettings(Model):
    owner: str | None = Field(
        default=None,
        description="PBX user who owns missed calls (record and callback task) when the caller has no "
        "responsible manager; unset: each CRM's default user",
    )


class AccountConfig(Model):
    account: str
    name: str | None = None
    timezone: str = "UTC"
    phone_region: str = Field(description="ISO country code for numbers that arrive without one, e.g. RU")
    pbx: SerializeAsAny[PbxSettings]
    crms: list[SerializeAsAny[CrmSettings]] = Field(default_factory=list)
    users: list[UserMapping] = Field(default_factory=list)
    contacts: list[ContactEntry] = Field(default_factory=list)
    recordings: RecordingsSettings = Field(default_factory=RecordingsSettings)
    missed_calls: MissedCallSettings = Field(default_factory=MissedCallSettings)
    api_keys: list[WebhookToken] = Field(
        default_factory=list,
        max_length=2,
        description="Bearer keys of /v1/{account}/calls: POST (click-to-call for any CRM or script) and GET "
        "(the call history). The first is current; a second stays valid during a rotation. Empty: those "
        "endpoints are closed.",
    )
    trusted_hosts: list[str] = Field(
        default_factory=list,
        description="host:port of CRM, PBX or recording servers reached on a private address or over "
        "plain http (a PBX in the office network; a local fake in tests): only those ports",
    )

    @field_validator("trusted_hosts")
    @classmethod
    def _trusted(cls, value: list[str]) -> list[str]:
        from callbridge.infra.netguard import is_metadata, parse_host_port

        for entry in value:
            host, port = parse_host_port(entry)
            if is_metadata(host):
                raise ValueError(f"{entry!r} is the cloud's instance metadata address: it is never trusted")
            if port is None:
                # Trusting a whole host would open its every port (SSH, a database) to our requests.
                raise ValueError(f"{entry!r} names no port: write host:port")
        return value

    @model_validator(mode="after")
    def _check_peer_urls(self, info: ValidationInfo) -> AccountConfig:
        """Every CRM and PBX address (the fields typed PeerUrl) is https to a public address, unless
        its host:port is in trusted_hosts; the error names the field (crms.0.base_url). Not checked
        again on a config read back from the store (from_stored): it was when it was applied, and an
        account stored before this rule must still take webhooks (the connection guard refuses)."""
        from callbridge.infra.netguard import normalize_hosts

        trusted = normalize_hosts(self.trusted_hosts)
        sections: list[tuple[tuple[str | int, ...], PbxSettings | CrmSettings]] = [(("pbx",), self.pbx)]
        sections += [(("crms", i), crm) for i, crm in enumerate(self.crms)]
        errors: list[InitErrorDetails] = []
        for loc, section in sections:
            section._trusted_hosts = trusted
            if (info.context or {}).get("stored"):
                continue
            for where, value, shown in _peer_urls(section, loc):
                problem = peer_url_problem(value, trusted)
                if problem is not None:
                    errors.append(
                        InitErrorDetails(
                            type=PydanticCustomError(
                                "peer_url",
                                "{problem} (list its host:port in trusted_hosts to allow it)",
                                {"problem": problem.replace(value, shown)},
                            ),
                            loc=where,
                            input=shown,
                        )
                    )
        if errors:
            raise ValidationError.from_exception_data(type(self).__name__, errors)
        return self

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys_env(cls, value: Any) -> Any:
        return [expand_env(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="before")
    @classmethod
    def _pbx_timezone(cls, data: Any) -> Any:
        # A PBX that reports local times may name the usual zone of its customers.
        if isinstance(data, dict) and "timezone" not in data:
            pbx = data.get("pbx")
            if isinstance(pbx, dict):
                with contextlib.suppress(ValueError):
                    zone = pbx_settings_model(str(pbx.get("kind", ""))).default_timezone
                    if zone:
                        return {**data, "timezone": zone}
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
        # Here, not at the top: the JSON APIs import this module for its types and refuse a wrong
        # key without parsing an account, and phonenumbers is a tenth of their cold start.
        import phonenumbers

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

    @model_validator(mode="after")
    def _missed_call_owner(self) -> AccountConfig:
        owner = self.missed_calls.owner
        if owner and all(u.pbx_user != owner for u in self.users):
            raise ValueError(f"missed_calls.owner {owner!r} is not a pbx_user of `users`")
        return self

    def crm(self, name: str) -> CrmSettings | None:
        return next((crm for crm in self.crms if crm.name == name), None)

    @classmethod
    def from_stored(cls, account_id: str, stored: dict[str, Any]) -> AccountConfig:
        """The typed view of a config as `public()` stored it: the secrets it left out or masked
        become placeholders that are never a usable secret (the real ones are read from SSM)."""
        data = _unmask(dict(stored))
        data.setdefault("account", account_id)
        pbx = data.get("pbx")
        if isinstance(pbx, dict):
            model = pbx_settings_model(str(pbx.get("kind", "")))
            data["pbx"] = {**pbx, **model.stored_placeholders()}
        return cls.model_validate(data, context={"stored": True})

    def public(self) -> dict[str, Any]:
        """The config without secrets, as stored in DynamoDB."""
        data = self.model_dump(
            mode="json",
            exclude={
                "contacts": True,
                "pbx": set(type(self.pbx).stored_without),
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


ACCOUNT_FILE_SUFFIXES = (".yaml", ".yml")  # what an accounts directory's account files end with


def load_account_file(path: Path) -> AccountConfig:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return AccountConfig.model_validate(data)
