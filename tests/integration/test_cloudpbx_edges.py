"""Cloud PBX records at their edges, through the webhook handler and the reconciliation against
DynamoDB, SQS and SSM on moto (the demo account: users andy and daria): a withheld caller id that
only events report is a stored missed call, its `contact` an empty answer; a user the PBX writes as
`login@tenant` (its history CSV always does) is the account's user, on every path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callbridge.core import accounts
from callbridge.core.terms import Flag
from callbridge.infra import clock
from callbridge.pbx.cloudpbx.history_csv import HistoryRow
from callbridge.pbx.cloudpbx.recovery import RecoveryResult, store_rows
from callbridge.store import calls
from tests.integration.test_cloudpbx_webhooks import drain_settle_queue, post
from tests.support import seed_contact, seed_event, seed_history

WITHHELD = "WITHHELD-MISSED-1"


def test_a_withheld_missed_call_that_only_events_report_is_stored(cloud: dict[str, str]) -> None:
    for kind, user in (("INCOMING", "daria"), ("INCOMING", "andy"), ("CANCELLED", "andy"), ("CANCELLED", "daria")):
        assert post(seed_event(kind, user, phone="", callid=WITHHELD)) == (200, None)
    drain_settle_queue(cloud)
    call = calls.get_call("demo", WITHHELD)
    assert call is not None
    assert (call["outcome"], call["final"], call["phone"]) == ("missed", True, "")
    assert Flag.NO_NUMBER.value in call["flags"]
    assert call["users_rang"] == {"andy", "daria"}
    assert call["ring_order"] == ["daria", "andy"]  # the missed-call owner's last resort: first rung


def test_a_withheld_caller_gets_an_empty_contact_answer_and_a_missing_phone_is_still_refused(
    cloud: dict[str, str],
) -> None:
    assert post(seed_contact(phone="", callid=WITHHELD)) == (200, {})
    without = {k: v for k, v in seed_contact(callid=WITHHELD).items() if k != "phone"}
    assert post(without)[0] == 400
    event = {k: v for k, v in seed_event("INCOMING", callid=WITHHELD).items() if k != "phone"}
    assert post(event)[0] == 400


def row(uid: str, account: str, start: datetime, **overrides: Any) -> HistoryRow:
    fields: dict[str, Any] = {"uid": uid, "type": "in", "client": "+79101234567", "account": account,
                              "via": "+74996861574", "start": start, "wait": 3, "duration": 42, "record": None,
                              "line": 1}  # fmt: skip
    fields.update(overrides)
    return HistoryRow(**fields)


def test_reconciled_calls_of_login_at_tenant_are_the_accounts_users(cloud: dict[str, str]) -> None:
    account = accounts.get_account("demo")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    result = RecoveryResult()
    store_rows(account, [row("REC-1", "andy@ats23.example.ru", start),
                         row("REC-2", "g_4f1c@ats23.example.ru", start, type="missed")], result)  # fmt: skip
    assert result.stored == 2
    assert calls.get_call("demo", "REC-1")["user"] == "andy"
    assert calls.get_call("demo", "REC-2")["user"] == "g_4f1c@ats23.example.ru"


def test_a_call_its_webhook_stored_is_known_to_the_reconciliation_under_the_same_marker(
    cloud: dict[str, str],
) -> None:
    """The webhook names the user `andy`, the PBX's history `andy@tenant`: one source record."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    assert post(seed_history(callid="REC-3", user="andy@ats23.example.ru", start=clock.iso(start)))[0] == 200
    assert calls.get_call("demo", "REC-3")["user"] == "andy"
    result = RecoveryResult()
    store_rows(accounts.get_account("demo"), [row("REC-3", "andy@ats23.example.ru", start, duration=124)], result)
    assert (result.stored, result.corrected, result.known) == (0, 0, 1)
