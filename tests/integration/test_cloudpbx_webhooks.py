"""Cloud PBX webhooks through their handlers against DynamoDB, SSM and SQS in moto server mode."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from pydantic import SecretStr

import call_settle
import cloudpbx
import contact
import event as event_fn
import history as history_fn
from callbridge.core import accounts
from callbridge.core.config import load_account_file
from callbridge.features.admin import apply_account
from callbridge.infra import clock, settings
from callbridge.store import calls
from tests.support import DEMO_TOKEN, form, http_event, seed_contact, seed_event, seed_history

ROOT = Path(__file__).resolve().parents[2]
CALL_ID = "B10D0EB124F4E64AF4EA-1511"
SINGLE = "/v1/demo/cloudpbx"


def post(fields: dict[str, Any], path: str = SINGLE, handler: Any = cloudpbx.handler, **kwargs: Any) -> tuple[int, Any]:
    response = handler(http_event(path, form(**fields), **kwargs), None)
    body = response["body"]
    return response["statusCode"], json.loads(body) if body else None


def drain_settle_queue(env: dict[str, str]) -> int:
    """Plays Lambda's SQS event source for the settle worker."""
    sqs = boto3.client("sqs")
    handled = 0
    while True:
        messages = sqs.receive_message(QueueUrl=env["SETTLE_QUEUE_URL"], MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return handled
        records = [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:settle",
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
        result = call_settle.handler({"Records": records}, None)
        assert result == {"batchItemFailures": []}
        for m in messages:
            sqs.delete_message(QueueUrl=env["SETTLE_QUEUE_URL"], ReceiptHandle=m["ReceiptHandle"])
        handled += len(messages)


def test_seed_history_is_stored_as_a_canonical_call(cloud):
    before = datetime.now(UTC)
    assert post(seed_history()) == (200, None)
    call = calls.get_call("demo", CALL_ID)
    assert call is not None
    assert call["phone"] == "+79101234567"
    assert (call["direction"], call["outcome"], call["user"], call["duration"]) == ("in", "answered", "andy", 124)
    assert call["recording_url"] == "https://link/file.mp3"
    assert call["final"] is True
    # The vendor documentation sends no start time: receipt time minus the duration, and we say so.
    assert call["start_source"] == "receipt_minus_duration"
    started = clock.parse_iso(call["started_at"])
    assert before - timedelta(seconds=125) <= started <= datetime.now(UTC) - timedelta(seconds=123)
    assert call["started_at"].endswith("Z")


def test_a_repeated_history_changes_nothing(cloud):
    assert post(seed_history())[0] == 200
    first = calls.get_call("demo", CALL_ID)
    assert post(seed_history(duration="999"))[0] == 200
    assert calls.get_call("demo", CALL_ID) == first
    assert [e["cmd"] for e in calls.timeline("demo", CALL_ID)] == ["history"]


def test_history_start_field_wins_and_secrets_are_not_kept(cloud):
    assert post(seed_history(start="20170703T121110Z", ext="101", groupRealName="Sales"))[0] == 200
    call = calls.get_call("demo", CALL_ID)
    assert (call["started_at"], call["start_source"]) == ("2017-07-03T12:11:10Z", "pbx")
    assert (call["extension"], call["department"]) == ("101", "Sales")
    raw = calls.timeline("demo", CALL_ID)[0]["raw"]
    assert DEMO_TOKEN not in raw and DEMO_TOKEN not in call["history_raw"]


def test_evented_call_takes_its_start_from_the_first_event(cloud):
    t0 = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
    moments = iter([t0, t0 + timedelta(seconds=5), t0 + timedelta(seconds=65), t0 + timedelta(seconds=70)])
    clock.set_clock(lambda: next(moments))
    try:
        for kind in ("INCOMING", "ACCEPTED", "COMPLETED"):
            assert post(seed_event(kind))[0] == 200
        assert post(seed_history(duration="65"))[0] == 200
    finally:
        clock.set_clock(None)
    call = calls.get_call("demo", CALL_ID)
    assert (call["started_at"], call["start_source"], call["outcome"]) == (
        "2024-05-01T09:00:00Z",
        "first_event",
        "answered",
    )
    assert [(e["cmd"], e["type"]) for e in calls.timeline("demo", CALL_ID)] == [
        ("event", "INCOMING"),
        ("event", "ACCEPTED"),
        ("event", "COMPLETED"),
        ("history", "in"),
    ]


def test_group_call_nobody_answered_is_one_missed_call(cloud):
    for fields in (
        seed_event("INCOMING", "andy"),
        seed_event("INCOMING", "daria"),
        seed_event("CANCELLED", "andy"),
        seed_event("CANCELLED", "daria"),
    ):
        assert post(fields)[0] == 200
    assert drain_settle_queue(cloud) == 1
    call = calls.get_call("demo", CALL_ID)
    assert (call["outcome"], call["final"], call["direction"], call["duration"]) == ("missed", True, "in", 0)
    assert call["users_rang"] == {"andy", "daria"}
    assert call["start_source"] == "first_event"
    # A newer PBX also sends history with status=Missed: still the same single call.
    assert post(seed_history(status="Missed", duration="0", user="andy", link=None))[0] == 200
    listed = calls.list_calls("demo")
    assert [c["call_id"] for c in listed] == [CALL_ID]
    assert listed[0]["outcome"] == "missed"


def test_group_call_someone_answered_is_not_missed(cloud):
    for fields in (
        seed_event("INCOMING", "andy"),
        seed_event("INCOMING", "daria"),
        seed_event("ACCEPTED", "daria"),
        seed_event("CANCELLED", "andy"),
        seed_event("COMPLETED", "daria"),
    ):
        assert post(fields)[0] == 200
    drain_settle_queue(cloud)
    call = calls.get_call("demo", CALL_ID)
    assert call.get("outcome") is None and not call.get("final")
    assert call["accepted_by"] == "daria"


def test_repeated_cancel_after_a_new_ring_does_not_end_the_call(cloud):
    # A PBX retry of INCOMING after CANCELLED must not put the phone back to ringing forever.
    for fields in (seed_event("INCOMING"), seed_event("CANCELLED"), seed_event("INCOMING")):
        assert post(fields)[0] == 200
    assert calls.get_call("demo", CALL_ID).get("ringing") is None


def test_hunting_gap_waits_for_the_settle_time(cloud, monkeypatch):
    monkeypatch.setenv("MISSED_CALL_SETTLE_SECONDS", "30")
    settings.reset_settings()
    from callbridge.core.record import settle_call

    t0 = datetime(2024, 5, 1, 9, 0, 0, tzinfo=UTC)
    now = [t0]
    clock.set_clock(lambda: now[0])
    try:
        post(seed_event("INCOMING", "andy"))
        post(seed_event("CANCELLED", "andy"))
        now[0] = t0 + timedelta(seconds=10)
        assert settle_call("demo", CALL_ID).status == "waiting"  # the next phone may be about to ring
        post(seed_event("INCOMING", "daria"))
        assert settle_call("demo", CALL_ID).status == "ringing"
        post(seed_event("CANCELLED", "daria"))
        now[0] = t0 + timedelta(seconds=41)
        assert settle_call("demo", CALL_ID).status == "missed"
        assert settle_call("demo", CALL_ID).status == "final"
    finally:
        clock.set_clock(None)


def test_newer_pbx_missed_history_without_events_is_missed(cloud):
    assert post(seed_history(status="missed", duration="0", link=None))[0] == 200
    call = calls.get_call("demo", CALL_ID)
    assert (call["outcome"], call["final"]) == ("missed", True)


def test_outgoing_busy_history(cloud):
    assert post(seed_history(type="out", status="Busy", duration="0", phone="+7 (916) 123-45-67", link=None))[0] == 200
    call = calls.get_call("demo", CALL_ID)
    assert (call["direction"], call["outcome"], call["phone"]) == ("out", "busy", "+79161234567")


@pytest.mark.parametrize(
    "fields",
    [
        seed_history(crm_token="wrong-token"),
        seed_history(crm_token=None),
        seed_contact(crm_token="demo-crm-token-000"),
        seed_event("INCOMING", crm_token=DEMO_TOKEN + "x"),
    ],
)
def test_wrong_token_is_401_with_the_exact_body(cloud, fields):
    assert post(fields) == (401, {"error": "Invalid token"})
    assert calls.get_call("demo", CALL_ID) is None


def test_unknown_account_looks_like_a_wrong_token(cloud):
    assert post(seed_history(), path="/v1/nobody/cloudpbx", account="nobody") == (401, {"error": "Invalid token"})
    assert post(seed_history(), path="/v1/BAD!/cloudpbx", account="BAD!") == (401, {"error": "Invalid token"})


@pytest.mark.parametrize(
    "fields",
    [
        seed_history(callid=None),
        seed_history(duration="soon"),
        seed_history(type="both"),
        seed_event("INCOMING", user=""),
        seed_contact(phone=None),
        {"crm_token": DEMO_TOKEN},  # no cmd at the single address
    ],
)
def test_missing_or_malformed_fields_are_400_with_the_exact_body(cloud, fields):
    assert post(fields) == (400, {"error": "Invalid parameters"})


def test_unknown_command_gets_200(cloud):
    assert post({"cmd": "teleport", "crm_token": DEMO_TOKEN}) == (200, None)


def test_per_command_addresses_dispatch_to_the_same_code(cloud):
    assert post(seed_event("INCOMING"), path="/v1/demo/cloudpbx/event", handler=event_fn.handler) == (200, None)
    assert post(seed_history(), path="/v1/demo/cloudpbx/history", handler=history_fn.handler) == (200, None)
    # A body whose cmd disagrees with the address is refused.
    assert post(seed_history(), path="/v1/demo/cloudpbx/contact", handler=contact.handler) == (
        400,
        {"error": "Invalid parameters"},
    )
    # cmd may be left out at a per-command address.
    assert post(seed_contact(cmd=None), path="/v1/demo/cloudpbx/contact", handler=contact.handler)[0] == 200


CONTACT_FORMS = ["79101234567", "89101234567", "+7 (910) 123-45-67", "9101234567", "+7 8 910 123 45 67"]


@pytest.mark.parametrize("phone", CONTACT_FORMS)
def test_contact_is_found_whatever_the_phone_format(cloud, phone):
    assert post(seed_contact(phone=phone)) == (
        200,
        {"contact_name": "Manager of Horns and Hooves LLC", "responsible": "andy"},
    )


@pytest.mark.parametrize("phone", CONTACT_FORMS)
def test_contact_is_found_for_an_account_applied_before_its_country_code_was_stored(cloud, phone):
    boto3.client("dynamodb").update_item(
        TableName=cloud["ACCOUNTS_TABLE"],
        Key=accounts.account_key("demo"),
        UpdateExpression="REMOVE phone_country_code",
    )
    accounts.clear_account_cache()
    assert post(seed_contact(phone=phone)) == (
        200,
        {"contact_name": "Manager of Horns and Hooves LLC", "responsible": "andy"},
    )


def test_a_number_with_an_extension_is_not_taken_for_the_contact_its_digits_would_make(cloud):
    # Digits of "+7 910 123 45 6" and the extension 7 spell the known +79101234567; the caller is
    # someone else (an invalid number with an extension), so nobody is named.
    assert post(seed_contact(phone="+7 910 123 45 6 ext. 7")) == (200, {})


def test_contact_unknown_number_is_an_empty_object(cloud):
    assert post(seed_contact(phone="79990000000")) == (200, {})
    assert post(seed_contact(phone="anonymous")) == (200, {})


def test_contact_accepts_json(cloud):
    response = contact.handler(
        http_event(
            "/v1/demo/cloudpbx/contact", json.dumps(seed_contact(phone="+74951234567")), content_type="application/json"
        ),
        None,
    )
    assert (response["statusCode"], json.loads(response["body"])) == (
        200,
        {"contact_name": "Semen Semenov", "responsible": "daria"},
    )


def test_token_rotation_accepts_old_and_new_and_sees_a_new_token_at_once(cloud):
    assert post(seed_contact())[0] == 200  # warms this Lambda's account cache with the old token
    config = load_account_file(ROOT / "accounts" / "demo.yaml")
    rotated = config.model_copy(
        update={
            "pbx": config.pbx.model_copy(
                update={"crm_tokens": [SecretStr("rotated-token-0002"), SecretStr(DEMO_TOKEN)]}
            )
        }
    )
    apply_account(rotated)
    accounts.clear_account_cache()  # as a different Lambda instance would see it: warm, but not this one's cache
    assert post(seed_contact())[0] == 200  # caches the rotated account
    apply_account(
        rotated.model_copy(
            update={"pbx": rotated.pbx.model_copy(update={"crm_tokens": [SecretStr("rotated-token-0003")]})}
        )
    )
    # A warm Lambda that still has the old account cached accepts the newest token at once...
    assert post(seed_contact(crm_token="rotated-token-0003"))[0] == 200
    # ...and, having re-read the account, no longer accepts the retired ones.
    assert post(seed_contact())[0] == 401
    assert post(seed_contact(crm_token="never-valid-token"))[0] == 401


def test_no_token_is_stored_in_dynamodb(cloud):
    assert post(seed_history())[0] == 200
    for table in (cloud["ACCOUNTS_TABLE"], cloud["CALLS_TABLE"], cloud["CONTACTS_TABLE"]):
        assert DEMO_TOKEN not in json.dumps(boto3.client("dynamodb").scan(TableName=table)["Items"])


def test_directory_outage_still_answers_the_ringing_phone(cloud, monkeypatch):
    monkeypatch.setenv("CONTACTS_TABLE", "no-such-table")
    settings.reset_settings()
    assert post(seed_contact()) == (200, {})


def test_store_outage_asks_the_pbx_to_retry_history(cloud, monkeypatch):
    monkeypatch.setenv("CALLS_TABLE", "no-such-table")
    settings.reset_settings()
    assert post(seed_history()) == (503, {"error": "Temporarily unavailable"})


@pytest.mark.parametrize(
    "fields",
    [
        seed_history(link="https://pbx.example/contacts/rec.mp3"),
        seed_history(user="contact-center"),
        seed_event("INCOMING", user="contact"),
    ],
    ids=["history-link", "history-user", "event-user"],
)
def test_a_webhook_that_merely_mentions_contact_is_retried_not_acknowledged(cloud, monkeypatch, fields):
    """Only the parsed `cmd` picks the contact fallback: a 2xx for a history or event means stored."""
    monkeypatch.setenv("CALLS_TABLE", "no-such-table")
    settings.reset_settings()
    assert post(fields) == (503, {"error": "Temporarily unavailable"})
    monkeypatch.setenv("CALLS_TABLE", cloud["CALLS_TABLE"])
    settings.reset_settings()
    assert post(fields)[0] == 200
    assert calls.get_call("demo", fields["callid"]) is not None or fields["cmd"] == "event"
    assert calls.timeline("demo", fields["callid"])


# -- a record over DynamoDB's item limit (store/calls.py stored_raw) ------------------------------


def test_a_history_with_a_500_kb_unknown_field_is_stored_flagged_and_idempotent(cloud):
    big = "x" * (500 * 1024)
    assert post(seed_history(notes=big, start="20170703T121110Z"))[0] == 200
    call = calls.get_call("demo", CALL_ID)
    assert call is not None and call["raw_truncated"] is True
    assert (call["phone"], call["user"], call["duration"], call["outcome"]) == ("+79101234567", "andy", 124, "answered")
    assert (call["recording_url"], call["started_at"]) == ("https://link/file.mp3", "2017-07-03T12:11:10Z")
    kept = json.loads(call["history_raw"])
    assert (kept["phone"], kept["callid"], kept["link"]) == ("79101234567", CALL_ID, "https://link/file.mp3")
    assert kept["notes"] == "x" * len(kept["notes"]) and len(kept["notes"]) < 8192
    assert kept[calls.RAW_CUT_NOTE] == {"notes": f"truncated, {len(big) + 2} bytes"}
    [marker] = calls.timeline("demo", CALL_ID)
    assert json.loads(marker["raw"]) == kept
    # The PBX's retry is still recognised as a repeat.
    assert post(seed_history(notes=big, start="20170703T121110Z"))[0] == 200
    assert calls.get_call("demo", CALL_ID) == call
    assert [e["cmd"] for e in calls.timeline("demo", CALL_ID)] == ["history"]


def test_a_history_of_a_few_megabytes_in_many_fields_is_stored(cloud):
    extra = {f"custom_{i}": "y" * 60_000 for i in range(50)}  # 3 MB, as many fields as the limit allows
    assert post(seed_history(**extra))[0] == 200
    call = calls.get_call("demo", CALL_ID)
    assert call is not None and call["raw_truncated"] is True and call["phone"] == "+79101234567"
    kept = json.loads(call["history_raw"])
    assert len(call["history_raw"].encode()) < 100 * 1024
    assert kept["user"] == "andy" and len(kept[calls.RAW_CUT_NOTE]) == 50


def test_an_event_and_a_rating_with_a_500_kb_unknown_field_are_stored(cloud):
    big = "z" * (500 * 1024)
    assert post(seed_event("INCOMING", notes=big))[0] == 200
    assert post({"cmd": "rating", "callid": CALL_ID, "rating": "5", "crm_token": DEMO_TOKEN, "notes": big})[0] == 200
    call = calls.get_call("demo", CALL_ID)
    assert call is not None and call["raw_truncated"] is True and call["ringing"] == {"andy"}
    assert call["rating"] == "5"
    assert [e["cmd"] for e in calls.timeline("demo", CALL_ID)] == ["event", "rating"]


def test_a_small_record_is_stored_as_sent_and_not_flagged(cloud):
    assert post(seed_history(notes="short"))[0] == 200
    call = calls.get_call("demo", CALL_ID)
    assert call is not None
    assert "raw_truncated" not in call and calls.RAW_CUT_NOTE not in json.loads(call["history_raw"])


def test_a_history_with_an_empty_phone_is_a_call_without_a_number(cloud):
    assert post(seed_history(phone=""))[0] == 200
    call = calls.get_call("demo", CALL_ID)
    assert call is not None and call["phone"] == "" and "no_number" in call["flags"]
    assert post(seed_history(phone=""))[0] == 200  # a repeat changes nothing
    assert [e["cmd"] for e in calls.timeline("demo", CALL_ID)] == ["history"]


def test_a_history_without_the_phone_field_is_still_400(cloud):
    assert post(seed_history(phone=None)) == (400, {"error": "Invalid parameters"})


def _log_lines(text: str) -> list[dict[str, Any]]:
    """The Powertools JSON lines (EMF metric lines aside) of what the handlers wrote."""
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" not in line and "message" in line]


def test_a_request_failing_before_it_binds_does_not_log_under_the_previous_ones_keys(
    cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm container keeps its logger: the second request's lines must not name the first's
    account or call id, whether it fails before authentication or never binds a call id at all."""
    from callbridge.infra.observability import logger

    assert post(seed_history())[0] == 200  # binds account=demo, call_id=CALL_ID
    # Powertools writes to the stdout it was created with (maybe an earlier test's capture): read
    # its lines where they go.
    written = io.StringIO()
    monkeypatch.setattr(logger().registered_handler, "stream", written)

    from callbridge.edge import webhooks as edge

    def outage(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("DynamoDB unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(edge, "authenticate", outage)
        status, _ = post(seed_history(callid="other-call"), path="/v1/other/cloudpbx", account="other")
    assert status == 503
    # An unknown command of the same account carries no call id: none may be inherited either.
    assert post({"cmd": "dial", "crm_token": DEMO_TOKEN})[0] == 200

    lines = _log_lines(written.getvalue())
    failed = [line for line in lines if line["message"] == "Cloud PBX webhook failed"]
    ignored = [line for line in lines if line["message"] == "unknown Cloud PBX command ignored"]
    assert failed and ignored
    assert "account" not in failed[0] and "call_id" not in failed[0]
    assert ignored[0]["account"] == "demo" and "call_id" not in ignored[0]
    assert all(CALL_ID not in json.dumps(line) for line in lines)


def _count_account_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The account ids core/accounts.py reads from DynamoDB from now on."""
    from callbridge.store.accounts import get_account_item as real

    reads: list[str] = []

    def counted(account_id: str, **kwargs: Any) -> Any:
        reads.append(account_id)
        return real(account_id, **kwargs)

    monkeypatch.setattr(accounts, "get_account_item", counted)
    return reads


def test_a_burst_for_an_unknown_account_costs_what_a_wrong_token_costs_and_answers_alike(
    cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deterministic cause of a timing difference is the reads a refusal makes: the same count
    for a made-up account as for a known one with a wrong token - read first (cold) and held
    (warm) - each read charged to the recheck budget of infra/refresh.py. The clock moves only when
    the test says, so that the budget's refill cannot make the runs differ."""
    from callbridge.infra import refresh

    now = [1000.0]
    clock = SimpleNamespace(monotonic=lambda: now[0])
    monkeypatch.setattr(accounts, "time", clock)
    monkeypatch.setattr(refresh, "time", clock)
    monkeypatch.setenv("CREDENTIAL_CACHE_SECONDS", "60")
    settings.reset_settings()
    accounts.clear_account_cache()
    reads = _count_account_reads(monkeypatch)

    def burst(account: str, token: str) -> tuple[int, list[dict[str, Any]]]:
        before = len(reads)
        path = f"/v1/{account}/cloudpbx"
        answers = [cloudpbx.handler(http_event(path, form(**seed_history(crm_token=token)), account=account), None)
                   for _ in range(100)]  # fmt: skip
        return len(reads) - before, answers

    cold = [burst("nosuch", DEMO_TOKEN), burst("demo", "not-the-token")]
    now[0] += 10  # the budget refilled; both still held (the account, and the id found missing)
    warm = [burst("nosuch", DEMO_TOKEN), burst("demo", "not-the-token")]
    assert [count for count, _ in cold + warm] == [5, 5, 5, 5]  # a burst of 5 reads, then none
    answers = [answer for _, some in cold + warm for answer in some]
    assert all(answer == answers[0] for answer in answers)
    assert answers[0]["statusCode"] == 401


def test_an_account_found_missing_answers_at_once_after_an_apply_here_and_within_seconds_otherwise(
    cloud: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_account_file(ROOT / "accounts" / "demo.yaml").model_copy(update={"account": "late"})
    late = "/v1/late/cloudpbx"
    assert post(seed_history(), path=late, account="late")[0] == 401
    apply_account(config)  # this container's apply forgets what it found missing
    assert post(seed_history(), path=late, account="late")[0] == 200

    # Applied by another container: this one remembers the account as missing, but a token it
    # does not know makes it look again (core/accounts.py recheck), as for a known account.
    assert post(seed_history(callid="x-1"), path="/v1/later/cloudpbx", account="later")[0] == 401
    from callbridge.store.accounts import get_account_item, put_account

    put_account("later", {k: v for k, v in (get_account_item("late") or {}).items() if k not in ("pk", "sk")})
    assert post(seed_history(callid="x-2"), path="/v1/later/cloudpbx", account="later")[0] == 200
