"""One call a CRM connector cannot take never holds back the others (docs/delivery.md, "Results,
retries, parking"): against moto and the fake MiniCRM / retailCRM of test_delivery.py, a stored call
whose start overflows the account's time zone (year 9999) is parked `rejected` on its own with the
error, every other call of the same run goes out, and the error is in the alarmed metric. And the
PBXs' implausible start times never reach the store (docs/cloudpbx.md, docs/telediscount.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import delivery as delivery_handler
from callbridge.core.config import CrmSettings
from callbridge.crm.base import Connector, Record, RecordResult
from callbridge.features.delivery import engine
from callbridge.infra import aws, clock, settings
from callbridge.pbx.ccrm.protocol import local_to_utc
from callbridge.pbx.cloudpbx.history_csv import parse_history_csv
from callbridge.pbx.cloudpbx.notifications import parse_start
from callbridge.pbx.telediscount.protocol import parse_setup_time
from callbridge.store import deliveries as store
from callbridge.store.dynamo import to_item
from callbridge_local.drivers import sqs_event
from tests.integration import test_delivery as suite
from tests.integration.test_delivery import (
    T0,
    Crms,
    assert_exactly_once,
    make_call,
    queued_delivery_messages,
    store_calls,
)

# The delivery suite's fixtures: its fake CRMs, frozen clock and two accounts (batch, realtime).
crms, now, setup = suite.crms, suite.now, suite.setup

pytestmark = pytest.mark.timeout(120)
ARN = "arn:aws:sqs:us-east-1:123456789012:DeliveryQueue"


def store_poison(account: str, n: int) -> str:
    """A final call whose start is the last second of year 9999 (what a PBX sent before ingest
    refused it, or what a store holds from before): answered, mapped, recorded."""
    call = make_call(account, n)
    call.update(started_at="9999-12-31T23:59:59Z", direction="in", outcome="answered", user="andy")
    aws.dynamodb().put_item(TableName=settings.get_settings().calls_table, Item=to_item(call))
    from callbridge.core import accounts, handoff

    handoff.call_final(accounts.get_account(account), call["call_id"])
    return str(call["call_id"])


def test_a_poison_call_is_parked_alone_and_the_batch_goes_out(setup: Crms, now: list[datetime]) -> None:
    ids = store_calls("batch", 5, start=1)
    poison = store_poison("batch", 90)
    report = engine.drain(accounts=["batch"])
    # retailCRM's record needs the start in the account's zone: year 9999 + 3 h overflows.
    assert_exactly_once(setup, ids)
    assert poison not in setup.retail.calls
    [parked] = [d for d in store.of_call("batch", poison) if d["crm"] == "retailcrm"]
    assert parked["state"] == store.REJECTED
    assert "could not build" in parked["reason"] and "OverflowError" in parked["reason"], parked["reason"]
    assert report.errors >= 1 and report.metrics()["DeliveriesParked"] >= 1  # the alarm's metric
    # Nothing left pending or leased: later runs take nothing, and send nothing twice.
    now[0] += timedelta(hours=2)
    assert engine.drain(accounts=["batch"]).claimed == 0
    assert_exactly_once(setup, ids)


def test_a_poison_call_in_a_realtime_batch_fails_no_message(setup: Crms, now: list[datetime]) -> None:
    ids = store_calls("realtime", 5, start=1)
    poison = store_poison("realtime", 90)
    messages = queued_delivery_messages()
    result = delivery_handler.handler(sqs_event(messages, ARN, "us-east-1"), None)
    assert result == {"batchItemFailures": []}
    assert_exactly_once(setup, ids)
    [parked] = [d for d in store.of_call("realtime", poison) if d["crm"] == "retailcrm"]
    assert parked["state"] == store.REJECTED and "OverflowError" in parked["reason"]
    now[0] += timedelta(hours=2)
    assert engine.drain(accounts=["realtime"]).claimed == 0


class _Crashing:
    """A connector whose send raises for one phone number (a fault of ours in building its
    request), as a stand-in for any bug a record could trigger: the real connector otherwise."""

    def __init__(self, real: Connector, phone: str):
        self.real, self.phone = real, phone
        self.kind, self.max_batch = real.kind, real.max_batch
        self.takes_recording_link = real.takes_recording_link

    def records(self, call: Any, recording: bool) -> Any:
        return self.real.records(call, recording)

    def send(self, batch: list[Record]) -> list[RecordResult]:
        if any(self.phone[-10:] in str(r.payload.values()) for r in batch):
            raise ValueError("cannot encode this record")
        return self.real.send(batch)

    def close(self) -> None:
        self.real.close()


def test_a_send_that_raises_fails_only_its_call(setup: Crms, now: list[datetime]) -> None:
    ids = store_calls("batch", 8, start=1)
    bad = ids[3]
    phone = make_call("batch", 4)["phone"]

    def connector_for(crm: CrmSettings, account: Any) -> Any:
        return _Crashing(engine.default_connector(crm, account), phone)

    report = engine.drain(accounts=["batch"], connector_for=connector_for)
    good = [i for i in ids if i != bad]
    assert set(setup.retail.calls) == set(good)
    assert all(d["state"] == store.REJECTED and "ValueError" in d["reason"] for d in store.of_call("batch", bad))
    assert report.errors == 2 and report.metrics()["DeliveriesParked"] == 2  # one per CRM


def test_a_crm_whose_run_crashes_is_counted_for_the_alarm(
    setup: Crms, now: list[datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    store_calls("batch", 3, start=1)

    def broken(crm: CrmSettings, account: Any) -> Any:
        raise RuntimeError("SSM unreachable")

    report = engine.drain(accounts=["batch"], connector_for=broken)
    assert report.delivered == 0 and report.errors == 2
    assert report.metrics()["DeliveriesParked"] == 2


# -- ingest: an implausible start is junk, like an unparseable one -----------------------------------
@pytest.mark.parametrize("raw", ["99991231T235959Z", "9999-12-31T23:59:59+00:00", "19700101T000000Z",
                                 "99991231T235959-1400", "00010101T000000+1400"])  # fmt: skip
def test_cloudpbx_history_start_outside_plausible_times_is_unparsed(raw: str) -> None:
    assert parse_start(raw) is None


def test_plausible_starts_still_parse() -> None:
    assert parse_start("20240501T060000Z") == T0
    assert parse_start(clock.now().strftime("%Y%m%dT%H%M%SZ")) is not None
    assert parse_setup_time(str(int(T0.timestamp()))) == T0
    assert local_to_utc("2024-05-01 09:00:00", "Europe/Moscow") == T0


@pytest.mark.parametrize("raw", ["253402300799", "253402300799000", "0000000001", "9999999999"])
def test_telediscount_setup_time_outside_plausible_times_is_unparsed(raw: str) -> None:
    assert parse_setup_time(raw) is None


def test_ccrm_and_the_history_csv_refuse_year_9999() -> None:
    assert local_to_utc("9999-12-31 23:59:59", "Asia/Tokyo") is None
    assert local_to_utc("0001-01-01 00:00:00", "America/Los_Angeles") is None
    rows, bad = parse_history_csv("uid-1,in,79161234567,andy,,9999-12-31T23:59:59+00:00,5,30,\n")
    assert rows == [] and "plausible" in bad[0].reason


def test_a_start_a_day_ahead_of_our_clock_is_still_taken(now: list[datetime]) -> None:
    ahead = now[0] + timedelta(hours=23)
    assert parse_start(ahead.strftime("%Y%m%dT%H%M%SZ")) == ahead
    assert parse_start((now[0] + timedelta(days=2)).strftime("%Y%m%dT%H%M%SZ")) is None
    assert parse_start(datetime(2000, 1, 1, tzinfo=UTC).strftime("%Y%m%dT%H%M%SZ")) is not None
