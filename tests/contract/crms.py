"""The CRM side's parameter table: one CrmProfile per connector of callbridge.registry.CRM.

A new connector gets every check of test_crm_contract.py by adding its profile to CRMS: how its
account-file entry looks, which fake CRM stands in for it on 127.0.0.1, how to read what that fake
accepted, what record a canonical call must become, and how to make the fake refuse one record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from callbridge.core.model import Call
from callbridge.core.terms import Direction, Outcome
from tests.fakes.bitrix24 import CLIENT_ID, MEMBER_ID, FakeBitrix24
from tests.fakes.kommo import CLIENT_ID as KOMMO_CLIENT_ID
from tests.fakes.kommo import REDIRECT_URI as KOMMO_REDIRECT_URI
from tests.fakes.kommo import FakeKommo
from tests.fakes.minicrm import FakeMiniCrm
from tests.fakes.retailcrm import FakeRetailCrm

# The PBX user every contract call belongs to, and who they are in the CRM (a UserMapping's fields).
MANAGER = "andy"
COLLEAGUE = "boris"  # a second user of the account (the missed-call owner checks)


@dataclass(frozen=True)
class CrmProfile:
    kind: str
    # (the fake's base URL, the API key) -> the account file's `crms[]` entry
    settings: Callable[[str, str], dict[str, Any]]
    # the UserMapping fields that make MANAGER a user of this CRM
    manager: dict[str, Any]
    # API key -> a fake CRM: an object with handle(method, path, query, headers, body), served by
    # tests.fakes.crm_server.serve, that validates every request against the CRM's protocol
    fake: Callable[[str], Any]
    # the records the fake accepted and kept, in the CRM's own format (once each)
    received: Callable[[Any], list[dict[str, Any]]]
    # (a record the fake kept, the account's time zone) -> the call's start it names (aware)
    started: Callable[[dict[str, Any], str], datetime]
    # (a stored canonical call, the account's time zone) -> fields its record must carry
    expected: Callable[[Call, str], dict[str, Any]]
    # make the fake refuse (as the CRM does: a business error, not an outage) the record of a phone
    reject: Callable[[Any, str], None]
    # protocol violations the fake saw
    violations: Callable[[Any], list[str]]
    # the UserMapping fields of COLLEAGUE, a second user, and the fields of a record filed under him
    colleague: dict[str, Any] = field(default_factory=dict)
    filed_under_colleague: dict[str, Any] = field(default_factory=dict)
    # A withheld caller id (no client number): the fields of the record the CRM files it as, or None
    # when the CRM has no place for it - then `withheld_skip`, the documented reason, which the
    # delivery records (settled as not applicable: no failure, no alarm).
    withheld: dict[str, Any] | None = None
    withheld_skip: str = ""
    # check name -> why this connector is known to fail it (run as a strict xfail: fixing it shows)
    known_gaps: dict[str, str] = field(default_factory=dict)
    # the fields of the account-file entry that turn the CRM's live call cards on (none: it shows none)
    cards: dict[str, Any] = field(default_factory=dict)
    # what the fake holds open that a finished call should have closed: a card shown and never hidden,
    # a call registered and never finished
    left_open: Callable[[Any], list[Any]] = lambda fake: []
    # a second way of the same connector (Bitrix24's local application): run as `{kind}-{variant}`
    variant: str = ""
    # (the fake, its URL, the account, the API key) -> what the account needs besides its file, once
    # the fake is served (Bitrix24's application: its first tokens in SSM)
    prepare: Callable[[Any, str, str, str], None] | None = None

    def __str__(self) -> str:
        return f"{self.kind}-{self.variant}" if self.variant else self.kind


def _utc(call: Call) -> str:
    assert call.started_at is not None
    return call.started_at.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S")


def _local(call: Call, timezone: str) -> str:
    assert call.started_at is not None
    return call.started_at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M:%S")


def _wall_clock(text: str, timezone: str) -> datetime:
    """A `Y-m-d H:i:s` time read in `timezone`."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo(timezone))


# -- MiniCRM: POST /Api/CallLog, one request per UserExtension, CallType 0 out / 1 received / 2 missed,
# Date in UTC, no id of ours unless a recording is stored, a number of the account's country (RU here)
# national with its trunk prefix, as MiniCRM's examples send it (the default number_format).
def _minicrm_received(fake: FakeMiniCrm) -> list[dict[str, Any]]:
    return [{**record, "UserExtension": extension} for extension, record in fake.all_records()]


def _national_ru(e164: str) -> str:
    """+79101234567 as dialled in Russia: 89101234567 (trunk prefix 8); other numbers as they are."""
    return "8" + e164[2:] if e164.startswith("+7") and len(e164) == 12 else e164


def _minicrm_expected(call: Call, timezone: str) -> dict[str, Any]:
    answered = 1 if call.outcome == Outcome.ANSWERED else 2
    call_type = 0 if call.direction == Direction.OUT else answered
    return {
        "UserExtension": "101",
        "Number": _national_ru(call.phone or ""),
        "Duration": call.duration,
        "CallType": call_type,
        "Date": _utc(call),
    }


MINICRM = CrmProfile(
    kind="minicrm",
    settings=lambda url, key: {"kind": "minicrm", "base_url": url, "api_key": key},
    manager={"minicrm_extension": "101"},
    colleague={"minicrm_extension": "103"},
    filed_under_colleague={"UserExtension": "103"},
    fake=FakeMiniCrm,
    received=_minicrm_received,
    started=lambda record, timezone: _wall_clock(record["Date"], "UTC"),
    expected=_minicrm_expected,
    reject=lambda fake, phone: fake.reject_numbers.add(_national_ru(phone)),
    violations=lambda fake: list(fake.errors),
    # The call log needs the client's Number and skips a record without one (`Missing`/`NotFound`,
    # docs/protocols/minicrm.md); it has no text field to say "withheld" in.
    withheld_skip="withheld caller id); MiniCRM needs one",
)


# -- retailCRM: POST /api/v5/telephony/calls/upload, date in the account's time zone, our call id as
# externalId, the manager as userId + code.
RETAILCRM_RESULTS = {
    Outcome.ANSWERED: "answered",
    Outcome.MISSED: "no answer",
    Outcome.NO_ANSWER: "no answer",
    Outcome.BUSY: "busy",
}


def _retailcrm_expected(call: Call, timezone: str) -> dict[str, Any]:
    assert call.direction is not None and call.outcome is not None
    return {
        "externalId": call.call_id,
        "type": call.direction.value,
        "phone": call.phone,
        "result": RETAILCRM_RESULTS[call.outcome],
        "duration": call.duration,
        "userId": 7,
        "code": "101",
        "date": _local(call, timezone),
    }


def _retailcrm_open_cards(fake: FakeRetailCrm) -> list[tuple[str, str]]:
    """(callExternalId, code) of each card whose last event is not its `hangup`."""
    last: dict[tuple[str, str], str] = {}
    for event in fake.events:
        for code in event.get("codes") or []:
            last[(str(event.get("callExternalId")), code)] = event["type"]
    return [card for card, kind in last.items() if kind != "hangup"]


RETAILCRM = CrmProfile(
    kind="retailcrm",
    settings=lambda url, key: {
        "kind": "retailcrm",
        "base_url": url,
        "api_key": key,
        "client_id": "contract-client-id-0001",
        "call_events": False,
    },
    manager={"retailcrm_user_id": 7, "retailcrm_code": "101"},
    colleague={"retailcrm_user_id": 9, "retailcrm_code": "103"},
    filed_under_colleague={"userId": 9, "code": "103"},
    fake=FakeRetailCrm,
    received=lambda fake: list(fake.calls.values()),
    started=lambda record, timezone: _wall_clock(record["date"], timezone),
    cards={"call_events": True},
    left_open=_retailcrm_open_cards,
    expected=_retailcrm_expected,
    reject=lambda fake, phone: fake.reject_phones.add(phone),
    violations=lambda fake: list(fake.errors),
    # `phone` ties an uploaded call to a customer and is validated per call (`calls[N][phone]`):
    # a word there would be refused call by call (docs/retailcrm.md, docs/delivery.md "Not applicable").
    withheld_skip="withheld caller id); retailCRM files calls by phone",
)

# -- Bitrix24: register + finish under the CALL_ID it hands out (the fake keeps each finished call as
# its register and finish parameters), the start in UTC with its offset, the manager's USER_ID.
BITRIX24_STATUS = {Outcome.ANSWERED: "200", Outcome.MISSED: "304", Outcome.NO_ANSWER: "304", Outcome.BUSY: "486"}


def _bitrix24_expected(call: Call, timezone: str) -> dict[str, Any]:
    assert call.started_at is not None and call.outcome is not None
    return {
        "PHONE_NUMBER": call.phone,
        "TYPE": 1 if call.direction == Direction.OUT else 2,
        "USER_ID": 7,
        "DURATION": call.duration,
        "STATUS_CODE": BITRIX24_STATUS[call.outcome],
        "CALL_START_DATE": call.started_at.astimezone(ZoneInfo("UTC")).isoformat(timespec="seconds"),
    }


def _bitrix24_unfinished(fake: FakeBitrix24) -> list[str]:
    return [call_id for call_id in fake.calls if call_id not in fake.finished]


# A withheld caller id is filed as "withheld", missed, under the manager, and never becomes a lead.
BITRIX24_WITHHELD = {"PHONE_NUMBER": "withheld", "TYPE": 2, "USER_ID": 7, "STATUS_CODE": "304", "CRM_CREATE": "0"}

BITRIX24 = CrmProfile(
    kind="bitrix24",
    settings=lambda url, key: {"kind": "bitrix24", "webhook_url": f"{url}/rest/1/{key}/", "call_cards": False},
    manager={"bitrix24_user_id": 7},
    colleague={"bitrix24_user_id": 9},
    filed_under_colleague={"USER_ID": 9},
    fake=lambda key: FakeBitrix24(code=key, users={7: "101", 9: "103"}),
    received=lambda fake: fake.filed(),
    started=lambda record, timezone: datetime.fromisoformat(record["CALL_START_DATE"]),
    cards={"call_cards": True},
    left_open=_bitrix24_unfinished,
    expected=_bitrix24_expected,
    reject=lambda fake, phone: fake.reject_phones.add(phone),
    violations=lambda fake: list(fake.errors),
    withheld=BITRIX24_WITHHELD,
)


# -- Bitrix24 as a local application: the same portal, called with OAuth tokens (the API key is the
# client secret); the first tokens come from an authorization code, as `callbridge bitrix24 authorize`.
def _bitrix24_app_settings(url: str, key: str) -> dict[str, Any]:
    app = {"portal": url, "client_id": CLIENT_ID, "client_secret": key, "member_id": MEMBER_ID, "oauth_url": url}
    return {"kind": "bitrix24", "app": app, "call_cards": False}


def _bitrix24_authorize(fake: FakeBitrix24, url: str, account: str, key: str) -> None:
    from callbridge.crm.bitrix24 import oauth
    from callbridge.crm.bitrix24.settings import Bitrix24Settings
    from callbridge.infra.netguard import normalize_hosts
    from tests.support import host_port

    fake.portal = url
    settings = Bitrix24Settings.model_validate({**_bitrix24_app_settings(url, key), "name": "bitrix24"})
    settings._trusted_hosts = normalize_hosts([host_port(url)])  # what the test account's trusted_hosts give it
    oauth.authorize(account, settings, fake.authorize())


BITRIX24_APP = CrmProfile(
    kind="bitrix24",
    variant="app",
    settings=_bitrix24_app_settings,
    manager={"bitrix24_user_id": 7},
    colleague={"bitrix24_user_id": 9},
    filed_under_colleague={"USER_ID": 9},
    fake=lambda key: FakeBitrix24(code="contract-unused-webhook", client_secret=key, users={7: "101", 9: "103"}),
    received=lambda fake: fake.filed(),
    started=lambda record, timezone: datetime.fromisoformat(record["CALL_START_DATE"]),
    cards={"call_cards": True},
    left_open=_bitrix24_unfinished,
    expected=_bitrix24_expected,
    reject=lambda fake, phone: fake.reject_phones.add(phone),
    violations=lambda fake: list(fake.errors),
    prepare=_bitrix24_authorize,
    withheld=BITRIX24_WITHHELD,
    known_gaps={
        "wrong_key": "a wrong client_secret shows at the next refresh only: the stored tokens still work",
    },
)


# -- amoCRM / Kommo: POST /api/v4/calls (the fake keeps each stored call as a note), an unknown caller
# an incoming lead in unsorted with the call in its metadata (every contract number is unknown to the
# fake: that path is the one every check crosses), an outgoing call's unknown number a contact first.
# The start as epoch seconds, the manager's user id as responsible and creator.
def _kommo_expected(call: Call, timezone: str) -> dict[str, Any]:
    assert call.started_at is not None
    return {
        "uniq": call.call_id,
        "phone": call.phone,
        "direction": "outbound" if call.direction == Direction.OUT else "inbound",
        "duration": call.duration,
        "responsible_user_id": 7,
        "created_at": int(call.started_at.timestamp()),
    }


def _kommo_settings(url: str, key: str) -> dict[str, Any]:
    return {"kind": "kommo", "base_url": url, "token": key, "notifications": False}


KOMMO = CrmProfile(
    kind="kommo",
    settings=_kommo_settings,
    manager={"kommo_user_id": 7},
    colleague={"kommo_user_id": 9},
    filed_under_colleague={"responsible_user_id": 9},
    fake=lambda key: FakeKommo(token=key),
    received=lambda fake: fake.filed(),
    started=lambda record, timezone: datetime.fromtimestamp(record["created_at"], UTC),
    cards={"notifications": True},
    expected=_kommo_expected,
    reject=lambda fake, phone: fake.refuse(phone),
    violations=lambda fake: list(fake.errors),
    # `phone` is mandatory and the call's only link to a card (docs/protocols/kommo.md).
    withheld_skip="withheld caller id); amoCRM files calls by phone",
)


# -- amoCRM as an integration with OAuth tokens (the API key is the secret key); the first tokens come
# from an authorization code, as `callbridge kommo authorize`.
def _kommo_app_settings(url: str, key: str) -> dict[str, Any]:
    app = {"client_id": KOMMO_CLIENT_ID, "client_secret": key, "redirect_uri": KOMMO_REDIRECT_URI}
    return {"kind": "kommo", "base_url": url, "app": app, "notifications": False}


def _kommo_authorize(fake: FakeKommo, url: str, account: str, key: str) -> None:
    from callbridge.crm.kommo import oauth
    from callbridge.crm.kommo.settings import KommoSettings
    from callbridge.infra.netguard import normalize_hosts
    from tests.support import host_port

    settings = KommoSettings.model_validate({**_kommo_app_settings(url, key), "name": "kommo"})
    settings._trusted_hosts = normalize_hosts([host_port(url)])  # what the test account's trusted_hosts give it
    oauth.authorize(account, settings, fake.authorize())


KOMMO_APP = replace(
    KOMMO,
    variant="app",
    settings=_kommo_app_settings,
    fake=lambda key: FakeKommo(token="contract-unused-long-lived-token", client_secret=key),
    prepare=_kommo_authorize,
    known_gaps={"wrong_key": "a wrong secret key shows at the next refresh only: the stored tokens still work"},
)

CRMS: list[CrmProfile] = [MINICRM, RETAILCRM, BITRIX24, BITRIX24_APP, KOMMO, KOMMO_APP]
