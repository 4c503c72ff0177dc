"""Every CRM connector of callbridge.registry.CRM against the same contract, through the delivery
engine (calls stored in DynamoDB on moto, drained to a fake CRM over HTTP) and through the connector
interface (callbridge.registry.connector): record mapping, an isolated faulty record, 401/403 as
configuration problems, 429 + Retry-After, outages and timeouts, and no secret in any error."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from callbridge import registry
from callbridge.core import accounts, handoff
from callbridge.core.config import AccountConfig, UserMapping
from callbridge.core.model import Call
from callbridge.crm.base import Connector, DeliveryContext, Record, RecordResult
from callbridge.features.admin import apply_account
from callbridge.features.delivery import engine
from callbridge.infra import aws, clock, secrets, settings
from callbridge.infra.http import RetryPolicy
from callbridge.store import deliveries
from callbridge.store.dynamo import to_item
from callbridge.store.keys import call_pk
from tests.contract.conftest import T0, FakeServers, Logs
from tests.contract.crms import COLLEAGUE, CRMS, MANAGER, CrmProfile
from tests.contract.harness import Faults, dynamodb_dump, leaks, pbx_webhook, run_queued
from tests.fakes.crm_server import serve
from tests.integration.recording_server import guarded_network
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(60)

TIMEZONE = "Europe/Moscow"
KEY = "contract-crm-api-key-0001"
WRONG_KEY = "contract-wrong-key-0002"
NO_WAIT = RetryPolicy(attempts=2, backoff_initial_s=0, backoff_max_s=0, jitter_s=0)


def test_every_registered_crm_has_a_profile() -> None:
    profiled = [p.kind for p in CRMS if not p.variant]
    assert len(profiled) == len(set(profiled)), "a CRM kind has two profiles"
    missing = sorted(set(registry.CRM) - set(profiled))
    assert not missing, f"CRM connectors without a contract profile (tests/contract/crms.py): {missing}"
    assert not set(profiled) - set(registry.CRM), "profiles of CRMs the registry does not name"


def test_each_profile_maps_its_manager_with_the_connectors_own_user_fields() -> None:
    # A connector reads a user's fields of its own system from its USER_FIELDS (callbridge.registry).
    for profile in CRMS:
        own = getattr(importlib.import_module(f"{registry.CRM[profile.kind]}.settings"), "USER_FIELDS", None)
        declared = set(UserMapping.model_fields) | set(own.model_fields if own else ())
        assert set(profile.manager) <= declared, f"{profile.kind}: {sorted(set(profile.manager) - declared)}"


# -- the stack: one account whose only CRM is the profile's, pointed at its fake --------------------
@dataclass
class CrmStack:
    profile: CrmProfile
    fake: Any
    faults: Faults
    url: str
    now: list[datetime]
    account: str

    def entry(self, key: str = KEY, url: str | None = None, cards: bool = False) -> dict[str, Any]:
        return {**self.profile.settings(url or self.url, key), "mode": "batch", **(self.profile.cards if cards else {})}

    def config(
        self, key: str = KEY, *, url: str | None = None, trust: bool = True, cards: bool = False, **extra: Any
    ) -> AccountConfig:
        """The account: its only CRM is the profile's, at the fake (or `url`), whose host:port the
        account trusts (trusted_hosts) unless `trust` is False, with its live call cards if `cards`;
        `extra`: more account-file fields."""
        colleague = [{"pbx_user": COLLEAGUE, **self.profile.colleague}] if self.profile.colleague else []
        data = {
            "account": self.account,
            "timezone": TIMEZONE,
            "phone_region": "RU",
            "pbx": {"kind": "cloudpbx", "crm_tokens": ["contract-pbx-token-0001"]},
            "crms": [self.entry(key, url, cards)],
            "users": [{"pbx_user": MANAGER, **self.profile.manager}, *colleague],
            **extra,
        }
        return AccountConfig.model_validate(trusting_fakes(data) if trust else data)

    def apply(
        self, key: str = KEY, *, url: str | None = None, trust: bool = True, cards: bool = False, **extra: Any
    ) -> None:
        apply_account(self.config(key, url=url, trust=trust, cards=cards, **extra))
        accounts.clear_account_cache()
        secrets.reset_secret_cache()  # a new container (a warm one reads SSM again within 5 minutes)

    def store(self, calls: list[dict[str, Any]]) -> list[str]:
        """Final canonical calls written to the calls table and handed to delivery, as a source does."""
        table = settings.get_settings().calls_table
        aws.dynamodb().batch_write_item(RequestItems={table: [{"PutRequest": {"Item": to_item(c)}} for c in calls]})
        for call in calls:
            handoff.call_final(accounts.get_account(self.account), call["call_id"])
        return [str(c["call_id"]) for c in calls]

    def drain(self) -> engine.Report:
        return engine.drain(accounts=[self.account])

    def later(self, **delta: float) -> None:
        self.now[0] += timedelta(**delta)

    def delivery(self, call_id: str) -> dict[str, Any]:
        (item,) = deliveries.of_call(self.account, call_id)
        return item

    def connector(self, key: str = KEY, **options: Any) -> Connector:
        # Through the account (not the settings model alone): the fake's host:port is trusted there.
        crm_settings = self.config(key).crms[0]
        assert crm_settings.name == self.profile.kind
        ctx = DeliveryContext(
            account=self.account,
            timezone=TIMEZONE,
            users=[UserMapping.model_validate({"pbx_user": MANAGER, **self.profile.manager})],
            recording_url=lambda call_id: f"https://bridge.example.com/v1/recordings/{call_id}",
            phone_region="RU",  # the account's, as the delivery engine gives it
        )
        return registry.connector(crm_settings, ctx, **options)

    def records(self, connector: Connector, calls: list[dict[str, Any]]) -> list[Record]:
        built = [connector.records(Call.from_item(c), False) for c in calls]
        assert all(not b.rejected for b in built), [b.rejected for b in built]
        return [r for b in built for r in b.records]

    def received(self) -> list[dict[str, Any]]:
        return self.profile.received(self.fake)

    def arrived(self, call: dict[str, Any]) -> bool:
        """Whether the fake CRM holds the record the profile says this stored call maps to."""
        expected = self.profile.expected(Call.from_item(call), TIMEZONE)
        return any(all(r.get(k) == v for k, v in expected.items()) for r in self.received())

    def parked(self, state: str) -> list[dict[str, Any]]:
        return deliveries.list_parked(self.account, self.profile.kind, state)

    def day(self, count: int) -> list[dict[str, Any]]:
        """`count` answered incoming calls of MANAGER, a minute apart."""
        return [
            canonical(self.account, n, "in", "answered", 30 + n, started=T0 - timedelta(minutes=n))
            for n in range(count)
        ]


@pytest.fixture(params=[*sorted(registry.CRM), *(str(p) for p in CRMS if p.variant)])
def profile(request: pytest.FixtureRequest) -> CrmProfile:
    """Every kind the registry names (and each second way of one, `{kind}-{variant}`): a kind
    without a profile fails every check."""
    found = {str(p): p for p in CRMS}.get(request.param)
    if found is None:
        pytest.fail(f"CRM {request.param!r} has no contract profile: add one to tests/contract/crms.py")
    return found


@pytest.fixture
def fake_crm(
    profile: CrmProfile, now: list[datetime], fake_servers: FakeServers, account_id: str
) -> Iterator[CrmStack]:
    """The profile's fake CRM on 127.0.0.1 behind a fault injector, for a new account of the
    provisioned stack: a connector may keep what a CRM hands out beside the call (callbridge.store.crm_calls)."""
    fake = profile.fake(KEY)
    faults = Faults(fake)
    try:
        url = fake_servers.put(serve, faults)
        if profile.prepare is not None:
            profile.prepare(fake, url, account_id, KEY)
            faults.requests = 0  # the checks count the connector's requests, not the preparation's
        yield CrmStack(profile, fake, faults, url, now, account_id)
    finally:
        faults.heal()  # a hung request is let go
    assert profile.violations(fake) == [], "the connector broke the CRM's protocol"


@pytest.fixture
def crm(fake_crm: CrmStack, monkeypatch: pytest.MonkeyPatch) -> CrmStack:
    """The same fake as the only CRM of a new account on moto, delivered to by the engine."""
    monkeypatch.setattr(engine, "HTTP_RETRY", NO_WAIT)  # in-process retries without sleeping
    for name, value in {"PUBLIC_BASE_URL": "https://bridge.example.com", "DELIVERY_RETRY_BASE_SECONDS": "10"}.items():
        monkeypatch.setenv(name, value)
    settings.reset_settings()
    fake_crm.apply()
    return fake_crm


def known_gap(request: pytest.FixtureRequest, profile: CrmProfile, check: str) -> None:
    if check in profile.known_gaps:
        request.applymarker(pytest.mark.xfail(reason=profile.known_gaps[check], strict=True))


# -- canonical calls ---------------------------------------------------------------------------------
def canonical(
    account: str, n: int, direction: str, outcome: str, duration: int, *, started: datetime = T0
) -> dict[str, Any]:
    """A final call of MANAGER as the calls table holds it (a missed call: the users it rang)."""
    call_id = f"k{n:04d}"
    item: dict[str, Any] = {
        "pk": call_pk(account, call_id),
        "sk": "CALL",
        "account": account,
        "call_id": call_id,
        "source": "cloudpbx",
        "final": True,
        "direction": direction,
        "outcome": outcome,
        "phone": f"+7916555{n:04d}",
        "phone_raw": f"7916555{n:04d}",
        "duration": duration,
        "started_at": clock.iso(started),
        "finalized_at": clock.iso(started + timedelta(seconds=duration)),
        "start_source": "pbx",
    }
    if outcome == "missed":
        item["users_rang"] = {MANAGER}
    else:
        item["user"] = MANAGER
    return item


def cases(account: str) -> list[dict[str, Any]]:
    """One call of each kind, at times that fall on another day in the account's zone or not."""
    return [
        canonical(account, 1, "in", "answered", 124, started=datetime.fromisoformat("2024-04-30T21:30:05+00:00")),
        canonical(account, 2, "out", "answered", 37, started=datetime.fromisoformat("2024-05-01T05:59:59+00:00")),
        canonical(account, 3, "in", "missed", 0, started=datetime.fromisoformat("2024-05-01T00:00:00+00:00")),
        canonical(account, 4, "out", "no_answer", 0, started=datetime.fromisoformat("2024-04-30T23:45:00+00:00")),
        canonical(account, 5, "out", "busy", 0, started=datetime.fromisoformat("2024-05-01T03:00:00+00:00")),
    ]


def matches(record: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(record.get(k) == v for k, v in expected.items())


# -- the checks --------------------------------------------------------------------------------------
def test_a_stored_call_arrives_as_the_crm_record_it_maps_to(crm: CrmStack) -> None:
    calls = cases(crm.account)
    ids = crm.store(calls)
    report = crm.drain()
    assert (report.delivered, report.rejected, report.failed) == (len(ids), 0, 0)
    received = crm.received()
    assert len(received) == len(calls)
    for item in calls:
        expected = crm.profile.expected(Call.from_item(item), TIMEZONE)
        found = [r for r in received if matches(r, expected)]
        assert len(found) == 1, f"{item['call_id']}: expected {expected} once among {received}"
    assert all(crm.delivery(i)["state"] == deliveries.DELIVERED for i in ids)
    assert crm.drain().claimed == 0  # delivered means done


def test_a_faulty_record_is_rejected_alone_and_not_retried(crm: CrmStack) -> None:
    calls = crm.day(5)
    bad = calls[2]
    crm.profile.reject(crm.fake, bad["phone"])
    ids = crm.store(calls)
    report = crm.drain()
    assert (report.delivered, report.rejected, report.failed, report.retried) == (4, 1, 0, 0)
    assert [crm.arrived(c) for c in calls] == [c is not bad for c in calls]
    assert crm.delivery(bad["call_id"])["state"] == deliveries.REJECTED
    assert all(crm.delivery(i)["state"] == deliveries.DELIVERED for i in ids if i != bad["call_id"])
    parked = crm.parked(deliveries.REJECTED)
    assert [d["call_id"] for d in parked] == [bad["call_id"]] and parked[0]["reason"]
    requests = crm.faults.requests
    crm.later(hours=6)
    assert crm.drain().claimed == 0 and crm.faults.requests == requests  # not retried, ever


def test_a_wrong_key_is_a_configuration_problem_retried_like_an_outage(
    crm: CrmStack, logs: Logs, request: pytest.FixtureRequest
) -> None:
    """The CRM's own answer to a key it does not know (MiniCRM 401, retailCRM 403): nothing is
    rejected record by record; fixing the key delivers everything."""
    known_gap(request, crm.profile, "wrong_key")
    crm.apply(WRONG_KEY)
    ids = crm.store(crm.day(3))
    report = crm.drain()
    assert (report.delivered, report.rejected, report.failed, report.retried) == (0, 0, 0, len(ids))
    assert all(crm.delivery(i)["state"] == deliveries.PENDING for i in ids)
    assert crm.parked(deliveries.REJECTED) == []
    assert not leaks(dynamodb_dump() + logs.text(), [KEY, WRONG_KEY])
    # The operator fixes the account (or the CRM its key); the next runs deliver everything, once.
    crm.apply(KEY)
    crm.later(hours=1)
    assert crm.drain().delivered == len(ids)
    assert len(crm.received()) == len(ids)


def test_429_retry_after_is_carried_and_honoured(crm: CrmStack) -> None:
    crm.faults.status, crm.faults.headers = 429, {"Retry-After": "900"}
    calls = crm.day(3)
    connector = crm.connector(retry=NO_WAIT)
    try:
        results = connector.send(crm.records(connector, calls))
    finally:
        connector.close()
    assert results and all(r.kind == "transient" and r.retry_after == 900 for r in results), results
    # Through the engine: the delivery is due again no sooner than the CRM asked.
    ids = crm.store(calls)
    assert crm.drain().retried == len(ids)
    due = min(clock.parse_iso(crm.delivery(i)["dlv_due"].split("#")[0]) for i in ids)
    assert due >= crm.now[0] + timedelta(seconds=900)
    crm.faults.heal()
    crm.later(seconds=600)
    assert crm.drain().claimed == 0  # still waiting as asked
    crm.later(seconds=301)
    assert crm.drain().delivered == len(ids)


@pytest.mark.parametrize("outage", [503, "timeout"], ids=str)
def test_outages_and_timeouts_are_transient_and_lose_nothing(
    crm: CrmStack, outage: int | str, monkeypatch: pytest.MonkeyPatch, logs: Logs
) -> None:
    if outage == "timeout":
        monkeypatch.setenv("DELIVERY_HTTP_TIMEOUT_SECONDS", "1")
        monkeypatch.setenv("DELIVERY_HTTP_ATTEMPTS", "1")
        settings.reset_settings()
        crm.faults.hang(30.0)
    else:
        crm.faults.status = int(outage)
    ids = crm.store(crm.day(4))
    report = crm.drain()
    assert (report.delivered, report.rejected, report.failed, report.retried) == (0, 0, 0, len(ids))
    # A down CRM costs one request (and its in-process retries) per run, not one per batch.
    assert crm.faults.requests == settings.get_settings().delivery_http_attempts
    crm.later(hours=1)
    assert all(crm.delivery(i)["state"] == deliveries.PENDING for i in ids)
    logged = logs.text()
    if outage != "timeout":
        assert "retrying a peer request" in logged  # the capture sees the product's log lines
    assert not leaks(dynamodb_dump() + logged, [KEY])
    crm.faults.heal()
    assert crm.drain().delivered == len(ids)
    assert len(crm.received()) == len(ids)
    assert crm.drain().claimed == 0


# -- answers no CRM documents as success: a moved host, an http→https redirect, a login page -------
UNDOCUMENTED: dict[str, tuple[int, bytes, dict[str, str]]] = {
    "redirect_302": (302, b"", {"Location": "https://moved.example.com/login?next=/api"}),
    "redirect_301": (301, b"<html>Moved</html>", {"Location": "https://crm.example.com/", "content-type": "text/html"}),
    "html_200": (200, b"<!doctype html><html><body><form>Log in</form></body></html>", {"content-type": "text/html"}),
    "truncated_json": (200, b'{"success": true, "result": {"CALL_ID": "x"', {}),
    "empty_200": (200, b"", {}),
    "foreign_json_200": (200, b'{"status": "ok"}', {}),
}


@pytest.mark.parametrize("answer", list(UNDOCUMENTED))
def test_an_answer_that_is_not_the_documented_success_is_never_delivered(crm: CrmStack, answer: str) -> None:
    """Through the engine: nothing is marked delivered, nothing rejected; the calls stay pending
    (after DeliveryMaxAttempts parked `failed`, alarmed), and arrive once the CRM answers again."""
    crm.faults.raw = UNDOCUMENTED[answer]
    ids = crm.store(crm.day(3))
    report = crm.drain()
    assert (report.delivered, report.rejected, report.failed, report.retried) == (0, 0, 0, len(ids))
    assert all(crm.delivery(i)["state"] == deliveries.PENDING for i in ids)
    assert crm.received() == []
    crm.faults.heal()
    crm.later(hours=1)
    assert crm.drain().delivered == len(ids)
    assert len(crm.received()) == len(ids)


# -- the connector alone, under every kind of answer: (fault injected, what every result must be) ---
FAULTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "401": ({"status": 401}, ["transient"] * 3),  # configuration: retried like an outage
    "403": ({"status": 403}, ["transient"] * 3),
    "wrong_key": ({}, ["transient"] * 3),  # the CRM's own answer to an unknown key
    "429": ({"status": 429, "headers": {"Retry-After": "120"}}, ["transient"] * 3),
    "500": ({"status": 500}, ["transient"] * 3),
    "502": ({"status": 502}, ["transient"] * 3),
    "503": ({"status": 503}, ["transient"] * 3),
    "504": ({"status": 504}, ["transient"] * 3),
    "timeout": ({"hang_s": 5.0}, ["transient"] * 3),
    "rejected": ({}, ["ok", "rejected", "ok"]),  # the CRM refuses the second record only
    "echoed_key": ({"echo": True}, ["rejected"] * 3),  # a 400 whose body echoes our request
    # Answers that are not the CRM's documented success: the CRM may have taken nothing, and it is no
    # fault of the records. Never delivered, never rejected: retried later like an outage.
    **{name: ({"raw": raw}, ["transient"] * 3) for name, raw in UNDOCUMENTED.items()},
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_answer_is_classified_and_no_error_names_a_secret(
    fake_crm: CrmStack, fault: str, logs: Logs, request: pytest.FixtureRequest
) -> None:
    crm = fake_crm
    known_gap(request, crm.profile, fault)
    injected, kinds = FAULTS[fault]
    for name, value in injected.items():
        setattr(crm.faults, name, value)
    calls = crm.day(3)
    if fault == "rejected":
        crm.profile.reject(crm.fake, calls[1]["phone"])
    key = WRONG_KEY if fault == "wrong_key" else KEY
    connector = crm.connector(key, retry=NO_WAIT, timeout_s=0.5)
    results: list[RecordResult] = []
    error = ""
    try:
        results = connector.send(crm.records(connector, calls))
    except Exception as exc:  # send must not raise; if it does, its text is checked too
        error = f"{type(exc).__name__}: {exc} {exc.__cause__!r} {exc.__context__!r}"
    finally:
        connector.close()
    texts = [error, *(f"{r.reason} {r.detail}" for r in results), logs.text()]
    assert not leaks("\n".join(texts), [KEY, WRONG_KEY])
    assert not error, error
    assert [r.kind for r in results] == kinds, results
    if fault == "429":
        assert all(r.retry_after == 120 for r in results), results
    if fault == "rejected":
        assert [crm.arrived(c) for c in calls] == [True, False, True]


def test_the_connector_interface(fake_crm: CrmStack) -> None:
    """What the engine relies on: the registry's connector, its kind, a positive batch limit, one
    result per record (ok once delivered, ok again for a repeat: CRMs de-duplicate), close()."""
    connector = fake_crm.connector(retry=NO_WAIT)
    try:
        assert connector.kind == fake_crm.profile.kind and connector.max_batch >= 1
        records = fake_crm.records(connector, fake_crm.day(3))
        assert all(r.delivery for r in records)
        assert [r.kind for r in connector.send(records)] == ["ok"] * len(records)
        assert [r.kind for r in connector.send(records)] == ["ok"] * len(records)
        assert connector.send([]) == []
    finally:
        connector.close()
    assert len(fake_crm.received()) == len(records)


@pytest.mark.parametrize("number", ["", "anonymous"])
def test_a_withheld_caller_is_filed_as_withheld_or_skipped_on_purpose(crm: CrmStack, number: str) -> None:
    """A missed call with a withheld caller id (stored flagged `no_number`): a CRM that files a call
    under any text shows it as "withheld"; one that needs a client number has no place for it, and
    the delivery says so - settled as not applicable with the documented reason, never `rejected`
    (parked, the operator's list) nor a failure."""
    [call] = crm.day(1)
    call.pop("user")
    call.update(phone=number, phone_raw=number, outcome="missed", duration=0, users_rang={MANAGER},
                ring_order=[MANAGER], flags={"no_number"})  # fmt: skip
    crm.store([call])
    report = crm.drain()
    (delivery,) = deliveries.of_call(crm.account, call["call_id"])
    if crm.profile.withheld is not None:
        assert (report.delivered, report.rejected, report.failed) == (1, 0, 0)
        assert [matches(r, crm.profile.withheld) for r in crm.received()] == [True], crm.received()
        assert delivery["state"] == deliveries.DELIVERED
        return
    assert (report.delivered, report.rejected, report.failed, report.not_applicable) == (0, 0, 0, 1)
    assert crm.received() == [] and crm.faults.requests == 0
    assert delivery["state"] == deliveries.NOT_APPLICABLE
    assert crm.profile.withheld_skip and crm.profile.withheld_skip in delivery["reason"], delivery["reason"]


def test_a_crm_on_an_untrusted_address_receives_nothing(crm: CrmStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CRM's address is a name that resolves to loopback (applying it passes: a name is checked
    on connect): the fake behind it gets no request at all, with the key or without, and the delivery
    is not retried into the same refusal. Trusting that host:port in the account delivers."""
    network = guarded_network(monkeypatch)
    net = next(network)
    port = urlsplit(crm.url).port
    net.add("crm.test", "127.0.0.1")
    crm.apply(url=f"https://crm.test:{port}", trust=False)
    ids = crm.store(crm.day(2))
    report = crm.drain()
    assert report.delivered == 0 and crm.faults.requests == 0 and crm.received() == []
    assert all(p != port for _, p in net.connects), net.connects
    # Parked as rejected with the reason, for the operator: retrying would be refused the same way.
    parked = crm.parked(deliveries.REJECTED)
    assert sorted(d["call_id"] for d in parked) == sorted(ids)
    assert all("address refused" in d["reason"] and "loopback" in d["reason"] for d in parked), parked
    crm.later(hours=6)
    assert crm.drain().claimed == 0 and crm.faults.requests == 0
    # Trusted (the operator's explicit choice for a CRM on a private network), the same fake gets them.
    crm.apply(url=f"http://127.0.0.1:{port}")
    for call_id in ids:
        assert deliveries.requeue(crm.account, call_id, crm.profile.kind, crm.now[0])
    assert crm.drain().delivered == len(ids)
    assert len(crm.received()) == len(ids)
    next(network, None)  # the fake network's own check: nothing tried to leave the machine


# -- the edges every CRM shares -------------------------------------------------------------------------
def filed_under_colleague(crm: CrmStack) -> list[bool]:
    return [matches(r, crm.profile.filed_under_colleague) for r in crm.received()]


def test_a_missed_call_goes_to_the_first_user_rung_in_ring_order(crm: CrmStack) -> None:
    """docs/missed-calls.md: without a responsible manager, a missed-call owner or a default user,
    the first mapped user whose phone rang - the first to ring, not the first in the alphabet."""
    [call] = crm.day(1)
    call.pop("user")
    call.update(outcome="missed", duration=0, users_rang={MANAGER, COLLEAGUE, "nobody"},
                ring_order=["nobody", COLLEAGUE, MANAGER])  # fmt: skip
    crm.store([call])
    assert crm.drain().delivered == 1
    assert filed_under_colleague(crm) == [True]


def test_a_missed_call_goes_to_the_accounts_owner_of_missed_calls_before_the_users_rung(crm: CrmStack) -> None:
    crm.apply(missed_calls={"owner": COLLEAGUE})
    [call] = crm.day(1)
    call.pop("user")
    call.update(outcome="missed", duration=0, users_rang={MANAGER}, ring_order=[MANAGER])
    crm.store([call])
    assert crm.drain().delivered == 1
    assert filed_under_colleague(crm) == [True]


def test_two_calls_from_one_number_minutes_apart_are_two_records(crm: CrmStack) -> None:
    """One CRM call per PBX call: a caller who rings the same manager again within minutes (the
    first not delivered yet) is a second record, with its own start."""
    first, second = crm.day(2)
    second.update(phone=first["phone"], phone_raw=first["phone_raw"])
    crm.store([first, second])
    assert crm.drain().delivered == 2
    assert len(crm.received()) == 2
    assert crm.arrived(first) and crm.arrived(second)


PBX_TOKEN = "contract-pbx-token-0001"  # the account's crm_tokens (CrmStack.config)


def serve_pbx(fake: Any) -> AbstractContextManager[str]:
    """The fake Cloud PBX's own server (FakeServers keeps one per way of serving: the CRM's is `serve`)."""
    return serve(fake)


def pbx_post(crm: CrmStack, **fields: Any) -> None:
    pbx_webhook(crm.account, {**fields, "crm_token": PBX_TOKEN, "user": MANAGER})


def test_the_crm_gets_the_calls_own_start_not_the_time_it_was_processed(crm: CrmStack) -> None:
    """The card queue lags 90 s behind the PBX, the history (without the PBX's start) comes 5 minutes
    later and the delivery an hour later: every CRM - its card's registration too, where it shows
    cards (Bitrix24 registers the call then) - gets the start of the call's first event, within 2 s."""
    crm.apply(cards=True)
    call = {"callid": "start-1", "phone": "79165550101"}
    began = crm.now[0]
    pbx_post(crm, cmd="event", type="INCOMING", **call)
    crm.later(seconds=90)
    run_queued(crm.account)  # the card, late, while the phone still rings
    for kind in ("ACCEPTED", "COMPLETED"):
        pbx_post(crm, cmd="event", type=kind, **call)
        crm.later(seconds=15)
    crm.later(minutes=5)
    pbx_post(crm, cmd="history", type="in", status="Success", duration="30", **call)
    run_queued(crm.account)
    crm.later(hours=1)
    assert crm.drain().delivered == 1
    [record] = crm.received()
    started = crm.profile.started(record, TIMEZONE)
    assert abs((started - began).total_seconds()) <= 2.0, (started, began, record)
    assert crm.profile.left_open(crm.fake) == []


def test_a_click_the_pbx_placed_without_an_id_is_one_crm_call_with_the_pbx_call_that_follows(
    crm: CrmStack, fake_servers: FakeServers
) -> None:
    """A click-to-call whose `makeCall` the Cloud PBX answered with an empty 200 (the card opened
    under a placeholder of ours, core/clicks.py), then the PBX's `out` history under its own call
    id: one CRM record, of the PBX's call, and nothing the click opened left open (a card shown, a
    call the CRM registered for it)."""
    from callbridge.core.accounts import get_account
    from callbridge.features import clicktocall
    from callbridge.store import calls
    from tests.fakes.cloudpbx_api import PATH, FakeCloudPbx

    pbx = FakeCloudPbx(token="contract-pbx-api-token-01", make_call_without_id=True)
    pbx_url = fake_servers.put(serve_pbx, pbx)
    crm.apply(cards=True, pbx={"kind": "cloudpbx", "crm_tokens": [PBX_TOKEN], "api_url": f"{pbx_url}{PATH}",
                               "token": pbx.token})  # fmt: skip
    account = get_account(crm.account)
    [manager] = [u for u in account.settings.users if u.pbx_user == MANAGER]
    clicked = crm.now[0]  # the PBX rings the manager at once: its call starts with the click
    placed = clicktocall.make_call(account, manager, "+79165550102")
    assert placed.pbx_call_id is None and [r["cmd"] for r in pbx.requests] == ["makeCall"]
    run_queued(crm.account)  # the click's card
    crm.later(seconds=20)
    pbx_post(crm, cmd="history", type="out", status="Success", duration="42", phone="79165550102",
             callid="pbx-own-1", start=clock.iso(clicked))  # fmt: skip
    run_queued(crm.account)
    crm.later(minutes=5)
    assert crm.drain().delivered == 1
    stored = calls.get_call(crm.account, "pbx-own-1")
    assert stored is not None
    if crm.profile.cards:  # the click's card was opened under a placeholder, which the PBX call took
        assert str(stored.get("card_call_id") or "").startswith("c2c-"), stored
    assert [matches(r, crm.profile.expected(Call.from_item(stored), TIMEZONE)) for r in crm.received()] == [True]
    assert crm.profile.left_open(crm.fake) == []
    assert pbx.errors == []
