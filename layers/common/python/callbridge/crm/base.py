"""What every CRM connector provides: records built from a stored call, limits, and
`send(batch) -> one result per record`. The delivery core (callbridge.features.delivery) owns state, retries
and exactly-once; connectors only speak their CRM's protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from callbridge.core.config import CrmSettings, UserMapping
from callbridge.core.model import Call

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
    """The records of one call, or why it can't be sent at all (a local, permanent rejection)."""

    records: list[Record]
    rejected: str = ""
    flags: frozenset[str] = frozenset()  # e.g. default_user: an unmapped PBX user, sent to the default


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What a connector needs to know about the account besides its own settings."""

    account: str
    timezone: str
    users: list[UserMapping]
    recording_url: Any  # Callable[[call_id], str]: our playback URL of a stored recording

    def user(self, pbx_user: str | None) -> UserMapping | None:
        if not pbx_user:
            return None
        return next((u for u in self.users if u.pbx_user == pbx_user), None)


class Connector(Protocol):
    kind: str
    max_batch: int  # records per request

    def records(self, call: Call, recording_stored: bool) -> CallRecords: ...

    def send(self, batch: list[Record]) -> list[RecordResult]: ...

    def close(self) -> None: ...


CrmSettingsModel = CrmSettings


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
