"""What every CRM connector provides: records built from a stored call, limits, and
`send(batch) -> one result per record`. The delivery core (callbridge.features.delivery) owns state, retries
and exactly-once; connectors only speak their CRM's protocol.

Beyond call delivery a CRM may offer optional capabilities. Its settings model says whether an
account's CRM offers one (a ClassVar, or a property when an account-file field switches one on, e.g.
retailCRM's `call_events`), so that the cheap paths (the webhook hand-off, the contact path) know which
CRMs offer what without importing a connector. Its connector module names, once, the module of the
package that implements each (`PACKAGE`, a CrmPackage: capability protocol -> module), and that
module's functions are the implementation: the registry imports it when a capability is first asked
for and checks it against the protocol (callbridge.registry.crm_capability). The core and the
features fan out to every CRM of the account that offers one:

- live_cards: ringing / answered / ended call cards (callbridge.core.live; `LiveCards`)
- responsible_lookup: who owns a phone number in the CRM, and is that manager free (`ResponsibleLookup`)
- click_to_call_secret: the secret field the CRM presents on its make-call and user-status requests
  (e.g. retailCRM's clientId); the features check it, the package reads the requests (`Callbacks`;
  `CallPlaced` when it registered the clicked call itself)
- module_registration: the CRM has an integration module to register (`ModuleRegistration`)
- callback_tasks: a missed incoming call becomes a callback task for a manager, closed when the
  client is reached (`CallbackTasks`; switched on by the CRM's `callbacks` settings). The features
  (callbridge.features.callbacks) own when, for whom and exactly-once; connectors speak the CRM.
- setup_lines: what the operator pastes into the CRM (our URLs), printed by `accounts apply` (`SetupLines`)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, SecretStr

from callbridge.core.config import STORED_SECRET, CrmSettings, UserMapping
from callbridge.core.live import LIVE_CARDS, has_live_cards
from callbridge.core.model import Call
from callbridge.core.terms import Direction, Outcome

T = TypeVar("T")  # how one CRM names a user

if TYPE_CHECKING:
    from callbridge.core.accounts import Account
    from callbridge.core.config import AccountConfig

ResultKind = Literal["ok", "rejected", "transient"]


@dataclass(frozen=True, slots=True)
class Record:
    """One item of a CRM request. A delivery (one call, one CRM) may need several records (MiniCRM:
    a missed call appears in the log of every user whose phone rang)."""

    delivery: str  # the call id of the delivery this record belongs to
    group: str  # records of one request share it (MiniCRM: UserExtension)
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RecordResult:
    kind: ResultKind
    reason: str = ""
    retry_after: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. {"duplicate": True}


OK = RecordResult("ok")


@dataclass(frozen=True, slots=True)
class CallRecords:
    """The records of one call, or why it can't be sent at all (a local, permanent rejection), or
    why this CRM has no place for it (`not_applicable`: nothing is wrong, nothing is sent, nobody is
    alarmed - a call without a client number to a CRM that files calls by number)."""

    records: list[Record]
    rejected: str = ""
    not_applicable: str = ""
    flags: frozenset[str] = frozenset()  # e.g. default_user: an unmapped PBX user, sent to the default


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What a connector needs to know about the account besides its own settings."""

    account: str
    timezone: str
    users: list[UserMapping]
    recording_url: Any  # Callable[[call_id], str]: our playback URL of a stored recording
    # (a URL that answers the stored bytes themselves - no redirect, valid for a download now - and
    # the file's extension) of a call's stored recording, for a CRM that downloads it on receipt
    recording_file: Callable[[str], tuple[str, str]] | None = None
    phone_region: str | None = None  # the account's country (ISO code): which numbers are national
    missed_owner: str | None = None  # the account's owner of missed calls (`missed_calls.owner`)
    # The PBX user responsible for a client number, as we know it (our directory, or the manager a
    # CRM named while the call rang); None when nobody is.
    responsible: Callable[[str], str | None] | None = None

    def user(self, pbx_user: str | None) -> UserMapping | None:
        if not pbx_user:
            return None
        return next((u for u in self.users if u.pbx_user == pbx_user), None)

    def missed_owners(self, call: Call) -> list[UserMapping]:
        """Whom a missed incoming call is filed under, best first: the caller's responsible manager,
        then the account's owner of missed calls. Empty: the CRM's default user. A group or hunting
        ring that nobody answered is ONE call, whoever's phones rang (`users_rang` stays ours)."""
        found: list[UserMapping] = []
        candidates = [self.responsible(call.phone) if self.responsible and call.phone else None, self.missed_owner]
        for pbx_user in candidates:
            mapping = self.user(pbx_user)
            if mapping is not None and mapping not in found:
                found.append(mapping)
        return found

    def missed_call_owner(
        self, call: Call, identify: Callable[[UserMapping], T | None], default: T | None
    ) -> tuple[T | None, bool]:
        """Whom a missed incoming call is filed under, in one CRM's terms, and whether it is the
        CRM's default user - the one rule of docs/missed-calls.md for every CRM: the caller's
        responsible manager, the account's owner of missed calls, the CRM's default user
        (`default`), then the first user rung, in the order the phones rang. `identify` is how the
        CRM names a user (None: the user is not mapped in that CRM)."""
        for owner in self.missed_owners(call):
            found = identify(owner)
            if found is not None:
                return found, False
        if default is not None:
            return default, True
        for pbx_user in call.rang_in_order() or [call.user or ""]:
            mapping = self.user(pbx_user)
            found = identify(mapping) if mapping is not None else None
            if found is not None:
                return found, False
        return None, True


def is_missed_incoming(call: Call) -> bool:
    return call.direction != Direction.OUT and call.outcome != Outcome.ANSWERED


class Connector(Protocol):
    kind: str
    max_batch: int  # records per request
    # How the CRM takes a recording. True: as our playback link (retailCRM `recordUrl`, amoCRM
    # `link`, MiniCRM `ReferenceId`): a realtime call goes at once and its link resolves once the
    # file is stored, unless the CRM downloads it on receipt (CrmSettings
    # `downloads_recording_on_receipt`). False: as a file it downloads when given (Bitrix24's
    # attachRecord), so a realtime call goes at once and its recording follows as an update.
    takes_recording_link: bool

    def records(self, call: Call, recording: bool) -> CallRecords:
        """The call's records; with `recording`, with the link to (or the file of) its recording."""
        ...

    def send(self, batch: list[Record]) -> list[RecordResult]: ...

    def close(self) -> None: ...


CrmSettingsModel = CrmSettings


@dataclass(frozen=True, slots=True)
class CrmPackage:
    """What a CRM package offers, declared once in its connector module (`PACKAGE`): the connector
    class the delivery builds (settings, DeliveryContext, api key, options), and its optional
    capabilities: each protocol below it implements -> the module of the package whose functions
    implement it (a name inside the package, e.g. "cards"). The registry imports that module when
    the capability is first asked for, not before: a path that uses one capability loads only it."""

    connector: Callable[..., Connector]
    capabilities: Mapping[type[Any], str] = field(default_factory=dict)


def with_secrets(account_id: str, crm: CrmSettings, *, force: bool = False, fast: bool = False) -> CrmSettings:
    """A CRM's typed settings (`account.settings.crms`) with the secret placeholders of the stored
    config replaced by the secrets in SSM. A secret SSM lacks keeps its placeholder, which no CRM
    accepts: the request fails like a wrong key and is retried once the secret is put."""
    from callbridge.infra import secrets

    values = secrets.account_secrets(account_id, force=force, fast=fast, under=secrets.CRMS)  # fast: the contact path
    filled: CrmSettings = _fill(crm, crm.name, "", values)
    return filled


def _fill(model: Any, crm: str, prefix: str, values: dict[str, str]) -> Any:
    """`model` with its stored-secret placeholders filled, one section deep too (Bitrix24's `app`:
    its secret is stored as `app.client_secret`, callbridge.features.admin.secret_fields)."""
    filled: dict[str, Any] = {}
    for key in type(model).model_fields:
        value = getattr(model, key)
        if isinstance(value, SecretStr) and value.get_secret_value() == STORED_SECRET:
            stored = values.get(_secret_name(crm, prefix + key))
            if stored:
                filled[key] = SecretStr(stored)
        elif isinstance(value, BaseModel) and not prefix:
            section = _fill(value, crm, f"{key}.", values)
            if section is not value:
                filled[key] = section
    return model.model_copy(update=filled) if filled else model


def _secret_name(crm: str, field_name: str) -> str:
    from callbridge.infra import secrets

    return secrets.crm_secret_name(crm, field_name)


def secret(crm: CrmSettings, field_name: str) -> str:
    """A secret field's value ("" when the model has no such field)."""
    value = getattr(crm, field_name, None)
    return value.get_secret_value() if isinstance(value, SecretStr) else ""


# -- optional capabilities ---------------------------------------------------------------------------
RESPONSIBLE_LOOKUP = "responsible_lookup"
CLICK_TO_CALL_SECRET = "click_to_call_secret"
MODULE_REGISTRATION = "module_registration"
CALLBACK_TASKS = "callback_tasks"


def offers(settings: CrmSettings, capability: str) -> bool:
    """Whether this CRM (its settings as the account file has them) offers `capability`."""
    if capability == LIVE_CARDS:
        return has_live_cards(settings)
    return bool(getattr(settings, capability, None))


def click_to_call_secret(settings: CrmSettings) -> str | None:
    """The name of the secret field the CRM authenticates its click-to-call requests with."""
    field_name = getattr(settings, CLICK_TO_CALL_SECRET, None)
    return str(field_name) if field_name else None


@runtime_checkable
class LiveCards(Protocol):
    def send_live(self, account: Account, settings: CrmSettings, message: dict[str, Any]) -> bool:
        """Show one queued card message (callbridge.core.live.message) in the CRM; False when it
        did not take it (logged). A card is useful for seconds: never retried later."""
        ...


@dataclass(frozen=True, slots=True)
class Responsible:
    """The CRM's answer for a phone number: its owner mapped to a PBX user, and the contact's name."""

    pbx_user: str | None = None
    contact_name: str | None = None
    manager_id: str | None = None
    manager_code: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The routing cache's entry (only what is known)."""
        entry = {
            "pbx_user": self.pbx_user,
            "contact_name": self.contact_name,
            "manager_id": self.manager_id,
            "manager_code": self.manager_code,
        }
        return {k: v for k, v in entry.items() if v}


@runtime_checkable
class ResponsibleLookup(Protocol):
    def lookup_responsible(self, account: Account, settings: CrmSettings, e164: str, timeout_s: float) -> Responsible:
        """The manager who owns `e164` in the CRM; an empty answer when it names nobody."""
        ...


@runtime_checkable
class ModuleRegistration(Protocol):
    def register_module(self, account: Account, settings: CrmSettings, base_url: str) -> dict[str, Any]:
        """Create or update our integration module in the CRM; returns what was sent."""
        ...


@runtime_checkable
class SetupLines(Protocol):
    def setup_lines(self, config: AccountConfig, settings: CrmSettings, base_url: str) -> list[str]:
        """What the operator pastes into the CRM (our URLs, never a secret), printed by `accounts apply`."""
        ...


def send_batch(batch: list[Record], attempt: Any) -> list[RecordResult]:
    """What every connector's `send` does: isolate the faulty records, and answer a CRM outage (after
    the HTTP retries) with one transient result per record, so the delivery is retried later."""
    from callbridge.infra.http import TransientHttpError

    if not batch:
        return []
    try:
        return isolate(batch, attempt)
    except TransientHttpError as exc:
        return [RecordResult("transient", str(exc), retry_after=exc.retry_after) for _ in batch]


def isolate(batch: list[Record], attempt: Any) -> list[RecordResult]:
    """Send `batch` with `attempt(batch) -> list[RecordResult] | str`; a str means the CRM refused
    the request as a whole without saying which record was at fault. Then halve the batch and try
    again until the faulty records stand alone: the others are delivered, the faulty ones rejected.
    CRMs de-duplicate by our id, so a record resent in a half is answered as a duplicate."""
    outcome = attempt(batch)
    if not isinstance(outcome, str):
        return list(outcome)
    if len(batch) == 1:
        return [RecordResult("rejected", outcome)]
    middle = len(batch) // 2
    return isolate(batch[:middle], attempt) + isolate(batch[middle:], attempt)


# Statuses that say our configuration is wrong (key, URL), not the record: retried like an outage
# so that fixing the account file and retrying delivers everything, never rejected record by record.
CONFIG_STATUSES = frozenset({401, 403, 404})


@dataclass(frozen=True, slots=True)
class Callback:
    """A CRM's request to us (click-to-call, a manager's new status), as its query string says."""

    secret: str  # what the CRM presents to authenticate (its `click_to_call_secret` field's value)
    phone: str = ""  # the number to call
    clid: str | None = None  # the caller id to show
    status: str = ""  # the manager's status, as sent
    # How the CRM names the manager: kept with a stored status, for the operator.
    manager: dict[str, str | None] = field(default_factory=dict)
    # The CRM's own id of the call it asks for, when it registered one (Bitrix24's CALL_ID): the
    # connector's `call_placed` keeps it, so that the call is filed under it, not as a second one.
    reference: str | None = None


@runtime_checkable
class Callbacks(Protocol):
    """A CRM that authorizes click-to-call (`click_to_call_secret`) reads its own requests."""

    def read_callback(self, query: Mapping[str, str]) -> Callback: ...

    def callback_user(self, users: Sequence[UserMapping], callback: Callback) -> UserMapping | None:
        """The PBX user of the manager the request names; None when no mapping names him."""
        ...


@runtime_checkable
class CallPlaced(Protocol):
    """Optional beside Callbacks: told once the PBX accepted the call a request with a `reference`
    asked for (callbridge.features.clicktocall)."""

    def call_placed(self, account: Account, settings: CrmSettings, callback: Callback, pbx_user: str, e164: str,
                    pbx_call_id: str | None) -> None: ...  # fmt: skip


def query_phone(raw: str | None) -> str:
    """A phone from a query string: an unencoded `+` (retailCRM's own example) decodes to a space."""
    value = raw or ""
    return "+" + value.strip() if value.startswith(" ") and value.strip()[:1].isdigit() else value.strip()


# -- callback tasks ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A callback task to open in a CRM for a missed caller."""

    marker: str  # ours, unique per task; written into the task so that a retry can find it
    phone: str  # E.164
    missed_at: datetime  # the first missed call of the task (UTC)
    due_at: datetime  # when the manager should have called back (UTC)
    reason: str  # why the call was missed (core.model.MissedReason)
    owners: list[UserMapping]  # the manager, best first (empty: the CRM's default user)
    only_unknown: bool = False  # open it only when the CRM does not know the number
    retry: bool = False  # an earlier attempt may have saved the task: look for the marker first


@dataclass(frozen=True, slots=True)
class CallbackOpened:
    task_id: str | None  # None: not opened (`skipped` says why, e.g. a known customer)
    skipped: str = ""
    customer_created: bool = False


@runtime_checkable
class CallbackTasks(Protocol):
    """Errors: callbridge.infra.http.TransientHttpError (retried later with the delivery) or
    PermanentHttpError (given up, recorded)."""

    def open_callback_task(self, account: Account, settings: CrmSettings, request: CallbackRequest) -> CallbackOpened:
        """Open the task (idempotent with `request.retry`: an existing task with the marker is
        returned, not created again)."""
        ...

    def close_callback_task(self, account: Account, settings: CrmSettings, task_id: str, note: str) -> None:
        """Mark the task done: the client was reached (`note` says how). Closing a closed task is fine."""
        ...

    def new_contact(self, account: Account, settings: CrmSettings, call: Call, owners: list[UserMapping]) -> bool:
        """Create the contact of an outgoing call to a number the CRM does not know, when its settings
        ask for it; idempotent; True when one was created now."""
        ...
