"""The PBX adapter interface: what the core and the features may ask of any PBX.

Each PBX package has an `adapter` module whose `ADAPTER` is a PbxAdapter (callbridge.registry finds
it by kind): the parts every PBX has, and its optional capabilities, declared once in its
`capabilities` table (capability protocol -> the module of the package whose functions implement
it). The registry imports that module when the capability is first asked for and checks it against
the protocol (callbridge.registry.pbx_capability); a PBX without one answers None there, and the
features check that instead of naming a PBX:

- `Dialer`: click-to-call (docs/clicktocall.md);
- `UserListing`: the PBX's own list of its users (features/users.py sync);
- `ScheduledJob`: a per-account job run on a schedule (features/schedules.py);
- `Backfill`: importing a past date range (features/backfill.py).

A dialer refuses with ClickToCallRefused (its `status` is what our API answers); every PBX's API
client error is a PbxFailure, so a feature can report one without knowing whose it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from callbridge.core.accounts import Account
    from callbridge.core.config import AccountConfig, PbxSettings, UserMapping

# progress(done, total): records read so far, and the total when the source tells it.
Progress = Callable[[int, int | None], None]


class PbxFailure(RuntimeError):
    """A request to a PBX's API failed (refused, unreachable, a request limit); safe to show."""


class PbxNotConfigured(Exception):
    """The account's PBX settings lack what was asked for (an API address, a key); safe to show."""


class ClickToCallRefused(Exception):
    """The PBX cannot place this call; `status` is the HTTP status our API answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class NotConfigured(ClickToCallRefused):
    def __init__(self, message: str) -> None:
        super().__init__(message, 409)


class UnknownUser(ClickToCallRefused):
    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class ListedUser(Protocol):
    """One user as the PBX lists it."""

    @property
    def name(self) -> str: ...
    @property
    def real_name(self) -> str | None: ...
    @property
    def ext(self) -> str | None: ...
    @property
    def email(self) -> str | None: ...


class JobResult(Protocol):
    def as_dict(self) -> dict[str, Any]: ...


@dataclass
class BackfillResult:
    status: str  # complete | already_complete | rate_limited
    records: int = 0
    stored: int = 0
    resumed_at: int = 0  # where the run started: a page or a record offset, as the PBX pages
    unreadable: int = 0  # source records that could not be read: reported and skipped, not fatal
    first: int = 0  # where a run that resumes nothing starts (the first page, or offset 0)

    @property
    def resumed(self) -> bool:
        return self.resumed_at > self.first

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "first"}


@dataclass
class BackfillCursor:
    """A backfill range's saved progress (empty when it starts over) and how to save it."""

    state: dict[str, Any]
    save: Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class BackfillOptions:
    deliver: bool
    progress: Progress | None = None
    api: Any = None  # a stand-in for the PBX's API client (tests)
    sleep: Callable[[float], None] | None = None


# The user is the typed mapping: a PBX reads its own fields of it with its USER_FIELDS model.
@runtime_checkable
class Dialer(Protocol):
    def dial(self, account: Account, user: UserMapping, e164: str, clid: str | None) -> str | None:
        """Place a call from `user` to `e164`; the PBX's id of it, when it tells one."""
        ...


@runtime_checkable
class UserListing(Protocol):
    def list_users(self, account: Account) -> list[ListedUser]: ...

    def lists_users(self, account: Account) -> bool:
        """Whether this account's settings let list_users work (the scheduled sync asks only those)."""
        ...


@runtime_checkable
class ScheduledJob(Protocol):
    def scheduled_job(self, account_id: str) -> JobResult: ...


@runtime_checkable
class Backfill(Protocol):
    def backfill(
        self, account: Account, date_from: datetime, date_to: datetime, cursor: BackfillCursor, options: BackfillOptions
    ) -> BackfillResult: ...


def as_is(account: Account, link: str) -> str:
    return link


def settings_secrets(settings: PbxSettings) -> dict[str, str | None]:
    """Every secret field of a PBX's settings under its SSM name: the default for a PBX whose
    secrets are only its settings' secret fields."""
    from pydantic import SecretStr

    from callbridge.infra import secrets

    found: dict[str, str | None] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            found[secrets.pbx_secret_name(name)] = value.get_secret_value()
    return found


def no_tokens(settings: PbxSettings) -> list[str]:
    return []


def no_lines(config: AccountConfig, base_url: str) -> list[str]:
    return []


@dataclass(frozen=True)
class PbxAdapter:
    kind: str
    # The secrets the PBX presents on our webhooks, checked by digest (core/accounts.py).
    webhook_tokens: Callable[[PbxSettings], list[str]] = no_tokens
    # SSM parameter name (under the account's path) -> value; None deletes the parameter.
    stored_secrets: Callable[[PbxSettings], dict[str, str | None]] = settings_secrets
    # What the operator pastes into the PBX's web cabinet (printed, never logged).
    cabinet_lines: Callable[[AccountConfig, str], list[str]] = no_lines
    # The URL the recordings worker downloads a stored link from (a PBX key is added only here).
    recording_fetch_url: Callable[[Account, str], str] = as_is
    # Optional capabilities: protocol above -> the module of the package that implements it ("adapter"
    # for this module itself), imported when first asked for.
    capabilities: Mapping[type[Any], str] = field(default_factory=dict)
