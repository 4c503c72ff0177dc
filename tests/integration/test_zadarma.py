"""Zadarma against moto (server mode) and the strict fake Zadarma API on 127.0.0.1
(docs/protocols/zadarma.md): signed notifications through the PbxWebhookFunction handler (wrong or
missing signatures refused, nothing stored), zd_echo, the call-start answer, one final call per call
whatever the order or repeats, recordings fetched from fresh links, reconciliation and a resumable
backfill from the paged, rate-limited statistics, click-to-call and the extension list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

import pbx_webhook
from callbridge.core import accounts
from callbridge.core.config import AccountConfig
from callbridge.features import backfill as backfill_feature
from callbridge.features.admin import apply_account
from callbridge.features.clicktocall import make_call
from callbridge.features.recordings.worker import RetryLater, fetch_recording
from callbridge.features.users import sync_users
from callbridge.infra import clock, secrets
from callbridge.infra.settings import get_settings
from callbridge.pbx.zadarma import client as zadarma_client
from callbridge.pbx.zadarma.client import for_account
from callbridge.pbx.zadarma.recovery import reconcile_account
from callbridge.store import calls
from tests.fakes.base import serve
from tests.fakes.zadarma import AUDIO, FakeZadarma, notification
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(90)
ACCOUNT = "zd"
KEY, API_SECRET, HOOK = "a248a6a984459935b569", "8a8e91d214fb728889c7", "zadarma-hook-secret-000001"
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)  # 11:00 in Europe/Berlin (the cabinet's zone here)


@pytest.fixture
def fake(cloud: dict[str, str]) -> Iterator[FakeZadarma]:
    zadarma_client.reset_limiters()
    peer = FakeZadarma(key=KEY, secret=API_SECRET)
    with serve(peer) as base:
        peer.base_url = base
        config = {
            "account": ACCOUNT, "phone_region": "DE", "timezone": "Europe/Berlin",
            "pbx": {"kind": "zadarma", "api_url": base, "api_key": KEY, "api_secret": API_SECRET,
                    "webhook_secret": HOOK},
            "users": [{"pbx_user": "100", "name": "Anna"}, {"pbx_user": "101", "name": "Ben"}],
            "contacts": [{"name": "Kunde Müller", "phones": ["+4930123456"], "responsible": "101"}],
        }  # fmt: skip
        apply_account(AccountConfig.model_validate(trusting_fakes(config)))
        accounts.clear_account_cache()
        secrets.reset_secret_cache()
        yield peer
    zadarma_client.reset_limiters()


@pytest.fixture
def now() -> Iterator[list[datetime]]:
    current = [T0]
    clock.set_clock(lambda: current[0])
    try:
        yield current
    finally:
        clock.set_clock(None)


def _event(method: str, secret: str, *, body: str = "", query: dict[str, str] | None = None,
           headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    path = f"/v1/{ACCOUNT}/zadarma/{secret}"
    return {
        "version": "2.0",
        "routeKey": f"{method} /v1/{{account}}/zadarma/{{secret}}",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "queryStringParameters": query or None,
        "headers": {"content-type": "application/x-www-form-urlencoded", **(headers or {})},
        "pathParameters": {"account": ACCOUNT, "secret": secret},
        "requestContext": {"http": {"method": method, "path": path, "sourceIp": "185.45.152.42"}},
        "body": body or None,
        "isBase64Encoded": False,
    }


def send(event_name: str, *, secret: str = HOOK, signature: str | None = None, **fields: str) -> tuple[int, Any]:
    body, signed = notification(API_SECRET, event_name, **fields)
    headers = {} if signature == "" else {"Signature": signed if signature is None else signature}
    response = pbx_webhook.handler(_event("POST", secret, body=urlencode(body), headers=headers), None)
    text = response["body"]
    return response["statusCode"], json.loads(text) if text else None


def incoming(call_id: str, phone: str = "+4930123456", start: str = "2024-05-01 11:00:00") -> dict[str, str]:
    return {"pbx_call_id": call_id, "caller_id": phone, "called_did": "4930999000", "call_start": start}


def end(
    call_id: str, disposition: str, duration: str, internal: str = "", rec: str = "", **more: str
) -> dict[str, str]:
    return {**incoming(call_id), "internal": internal, "duration": duration, "disposition": disposition,
            "status_code": "16", "is_recorded": "1" if rec else "0", "call_id_with_rec": rec, **more}  # fmt: skip


def items(call_id: str) -> list[dict[str, Any]]:
    from callbridge.infra import aws
    from callbridge.infra.settings import get_settings
    from callbridge.store.keys import call_pk

    found = aws.dynamodb().query(
        TableName=get_settings().calls_table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": call_pk(ACCOUNT, call_id)}},
    )
    return list(found["Items"])


# -- notifications ------------------------------------------------------------------------------
def test_the_cabinet_address_check_is_echoed_for_the_right_address_only(fake: FakeZadarma) -> None:
    answer = pbx_webhook.handler(_event("GET", HOOK, query={"zd_echo": "f9a8c7"}), None)
    assert (answer["statusCode"], answer["body"]) == (200, "f9a8c7")
    assert answer["headers"]["content-type"].startswith("text/plain")
    wrong = pbx_webhook.handler(_event("GET", "not-the-secret-000000", query={"zd_echo": "f9a8c7"}), None)
    assert wrong["statusCode"] == 404
    odd = pbx_webhook.handler(_event("GET", HOOK, query={"zd_echo": "<script>"}), None)
    assert odd["statusCode"] == 400


@pytest.mark.parametrize("signature", ["", "bm90IGl0", None])
def test_a_wrong_or_missing_signature_is_refused_and_nothing_is_stored(
    fake: FakeZadarma, now: list[datetime], signature: str | None
) -> None:
    fields = end("in_bad01", "answered", "30", internal="100")
    if signature is None:  # signed with another secret
        body, signed = notification("another-secret-000", "NOTIFY_END", **fields)
        response = pbx_webhook.handler(_event("POST", HOOK, body=urlencode(body), headers={"Signature": signed}), None)
        status = response["statusCode"]
    else:
        status, _ = send("NOTIFY_END", signature=signature, **fields)
    assert status == 401
    assert items("in_bad01") == []
    assert send("NOTIFY_END", secret="a-wrong-secret-00000", **fields)[0] == 404
    assert items("in_bad01") == []


def test_the_call_start_answer_names_the_caller_and_routes_to_the_responsible_extension(
    fake: FakeZadarma, now: list[datetime]
) -> None:
    status, answer = send("NOTIFY_START", **incoming("in_known01"))
    assert status == 200
    assert answer == {"caller_name": "Kunde Müller", "redirect": "101", "return_timeout": 20}
    assert calls.get_call(ACCOUNT, "in_known01") is not None  # stored before it was answered
    status, answer = send("NOTIFY_START", **incoming("in_stranger01", phone="+4940555666"))
    assert (status, answer) == (200, {})  # Zadarma's own scenario goes on


def test_a_call_is_one_final_call_whatever_the_repeats_and_the_order(fake: FakeZadarma, now: list[datetime]) -> None:
    call = "in_answered01"
    assert send("NOTIFY_END", **end(call, "answered", "42", internal="101", rec="1714554000.1"))[0] == 200
    assert send("NOTIFY_START", **incoming(call))[0] == 200  # late, after the end
    assert send("NOTIFY_INTERNAL", **incoming(call), internal="100")[0] == 200
    assert send("NOTIFY_INTERNAL", **incoming(call), internal="101")[0] == 200
    assert send("NOTIFY_ANSWER", **{**incoming(call), "destination": "4930999000", "internal": "101"})[0] == 200
    first = calls.get_call(ACCOUNT, call)
    assert send("NOTIFY_END", **end(call, "answered", "42", internal="101", rec="1714554000.1"))[0] == 200
    again = calls.get_call(ACCOUNT, call)
    assert first is not None and again is not None
    assert first["final"] is True and first["outcome"] == "answered" and first["user"] == "101"
    assert first["duration"] == 42 and first["direction"] == "in"
    assert first["started_at"] == "2024-05-01T09:00:00Z"  # 11:00 Berlin, in UTC
    assert first["recording_url"] == f"{fake.base_url}/v1/pbx/record/request/?call_id=1714554000.1"
    assert len([i for i in items(call) if i["sk"]["S"] == "CALL"]) == 1
    assert again["finalized_at"] == first["finalized_at"]


def test_a_group_call_nobody_took_is_missed_with_its_reason(fake: FakeZadarma, now: list[datetime]) -> None:
    call = "in_group01"
    send("NOTIFY_START", **incoming(call, phone="+4940555666"))
    send("NOTIFY_INTERNAL", **incoming(call, phone="+4940555666"), internal="100")
    send("NOTIFY_INTERNAL", **incoming(call, phone="+4940555666"), internal="101")
    assert send("NOTIFY_END", **{**end(call, "no answer", "0"), "caller_id": "+4940555666"})[0] == 200
    stored = calls.get_call(ACCOUNT, call)
    assert stored is not None
    assert (stored["outcome"], stored["missed_reason"]) == ("missed", "no_answer")
    assert set(stored["users_rang"]) == {"100", "101"}
    assert stored.get("recording_url") is None


def test_an_outgoing_call_is_recorded_with_its_manager(fake: FakeZadarma, now: list[datetime]) -> None:
    call = "out_0001"
    base = {"pbx_call_id": call, "internal": "100", "destination": "4930777888", "call_start": "2024-05-01 11:05:00"}
    assert send("NOTIFY_OUT_START", **base)[0] == 200
    assert send("NOTIFY_OUT_END", **base, caller_id="4930999000", duration="0", disposition="busy",
                status_code="17", is_recorded="0", call_id_with_rec="")[0] == 200  # fmt: skip
    stored = calls.get_call(ACCOUNT, call)
    assert stored is not None
    assert (stored["direction"], stored["outcome"], stored["user"], stored["phone"]) == (
        "out",
        "busy",
        "100",
        "+4930777888",
    )


def test_a_recording_is_fetched_from_a_fresh_link_each_time(fake: FakeZadarma, now: list[datetime]) -> None:
    fake.recordings["1714554000.7"] = AUDIO
    call = "in_rec01"
    send("NOTIFY_END", **end(call, "answered", "12", internal="100", rec="1714554000.7"))
    send("NOTIFY_RECORD", pbx_call_id=call, call_id_with_rec="1714554000.7")
    fake.expire_links()  # a link asked for earlier is worthless now
    assert fetch_recording(ACCOUNT, call).status == "stored"
    assert fake.count("/v1/pbx/record/request/") == 1
    assert fake.errors == []


def fetches_queued(cloud: dict[str, str]) -> list[str]:
    """The recording fetches queued so far (taken off the queue): the call id of each."""
    import boto3

    sqs, url, found = boto3.client("sqs"), cloud["RECORDING_QUEUE_URL"], []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            found.append(json.loads(message["Body"])["call_id"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def test_a_recording_announced_only_by_notify_record_is_fetched_once(
    fake: FakeZadarma, now: list[datetime], cloud: dict[str, str]
) -> None:
    fake.recordings["1714554000.9"] = AUDIO
    call = "in_recafter01"
    assert send("NOTIFY_END", **end(call, "answered", "15", internal="100"))[0] == 200  # is_recorded=0
    assert fetches_queued(cloud) == []
    for _ in range(2):  # the PBX's retry of the notification starts nothing more
        assert send("NOTIFY_RECORD", pbx_call_id=call, call_id_with_rec="1714554000.9")[0] == 200
    assert fetches_queued(cloud) == [call]
    stored = calls.get_call(ACCOUNT, call)
    assert stored is not None
    assert stored["recording_url"] == f"{fake.base_url}/v1/pbx/record/request/?call_id=1714554000.9"
    assert fetch_recording(ACCOUNT, call).status == "stored"
    assert fake.count("/v1/pbx/record/request/") == 1 and fake.errors == []


def test_a_notify_record_before_its_end_is_fetched_when_the_call_is_final(
    fake: FakeZadarma, now: list[datetime], cloud: dict[str, str]
) -> None:
    fake.recordings["1714554000.8"] = AUDIO
    call = "in_recfirst01"
    assert send("NOTIFY_RECORD", pbx_call_id=call, call_id_with_rec="1714554000.8")[0] == 200
    assert fetches_queued(cloud) == []  # nothing final to attach it to yet
    assert send("NOTIFY_END", **end(call, "answered", "15", internal="100"))[0] == 200
    assert send("NOTIFY_END", **end(call, "answered", "15", internal="100"))[0] == 200
    assert fetches_queued(cloud) == [call]
    assert fetch_recording(ACCOUNT, call).status == "stored"


def test_a_notify_record_after_a_recorded_end_starts_no_second_fetch(
    fake: FakeZadarma, now: list[datetime], cloud: dict[str, str]
) -> None:
    fake.recordings["1714554000.6"] = AUDIO
    call = "in_recboth01"
    send("NOTIFY_END", **end(call, "answered", "12", internal="100", rec="1714554000.6"))
    send("NOTIFY_RECORD", pbx_call_id=call, call_id_with_rec="1714554000.6")
    assert fetches_queued(cloud) == [call]  # the end's


def test_a_notify_record_fetches_again_a_recording_the_end_could_not_get(
    fake: FakeZadarma, now: list[datetime], cloud: dict[str, str]
) -> None:
    call = "in_reclate01"
    send("NOTIFY_END", **end(call, "answered", "12", internal="100", rec="1714554000.5"))
    assert fetches_queued(cloud) == [call]
    # Not saved yet: the PBX answers 404 until the worker's last try gives up.
    with pytest.raises(RetryLater):
        fetch_recording(ACCOUNT, call, attempt=get_settings().recording_max_attempts)
    assert (calls.get_call(ACCOUNT, call) or {}).get("recording_state") == "unavailable"
    fake.recordings["1714554000.5"] = AUDIO
    send("NOTIFY_RECORD", pbx_call_id=call, call_id_with_rec="1714554000.5")  # now it is
    assert fetches_queued(cloud) == [call]
    assert fetch_recording(ACCOUNT, call).status == "stored"
    stored = calls.get_call(ACCOUNT, call)
    assert stored is not None and stored["recording_state"] == "stored" and "recording_error" not in stored


# -- the API ------------------------------------------------------------------------------------
def line(call_id: str, start: str, disposition: str = "answered", seconds: int = 30, **more: Any) -> dict[str, Any]:
    return {"call_id": f"{call_id}.rec", "sip": "4930999000", "callstart": start, "clid": "+4930123456",
            "destination": 101, "disposition": disposition, "seconds": seconds, "is_recorded": False,
            "pbx_call_id": call_id, **more}  # fmt: skip


def test_the_reconciliation_stores_the_calls_whose_end_was_lost(fake: FakeZadarma, now: list[datetime]) -> None:
    send("NOTIFY_END", **end("in_known02", "answered", "30", internal="101"))
    fake.stats = [line("in_known02", "2024-05-01 10:30:00"), line("in_lost01", "2024-05-01 10:40:00"),
                  line("out_lost02", "2024-05-01 10:45:00", sip="100", destination="4930777888", clid="4930999000"),
                  line("in_lost03", "2024-05-01 10:50:00", disposition="no answer", seconds=0)]  # fmt: skip
    result = reconcile_account(ACCOUNT)
    assert (result.status, result.stored, result.known) == ("complete", 3, 1)
    lost = calls.get_call(ACCOUNT, "out_lost02")
    assert lost is not None and (lost["direction"], lost["user"], lost["phone"]) == ("out", "100", "+4930777888")
    missed = calls.get_call(ACCOUNT, "in_lost03")
    assert missed is not None and missed["outcome"] == "missed"
    assert reconcile_account(ACCOUNT).stored == 0  # nothing twice
    assert fake.errors == []


def test_a_rate_limited_reconciliation_stops_and_the_next_run_goes_on(fake: FakeZadarma, now: list[datetime]) -> None:
    fake.statistics_per_window = 0  # every statistics request is over the limit
    fake.stats = [line("in_lost11", "2024-05-01 10:40:00")]
    api = for_account(accounts.get_account(ACCOUNT), sleep=lambda _: None)
    result = reconcile_account(ACCOUNT, api=api)
    assert result.status == "rate_limited" and calls.get_call(ACCOUNT, "in_lost11") is None
    fake.statistics_per_window = 3
    assert reconcile_account(ACCOUNT, api=api).stored == 1


def test_a_backfill_pages_the_statistics_and_resumes_where_it_stopped(fake: FakeZadarma, now: list[datetime]) -> None:
    fake.stats = [line(f"in_bf{n:03d}", f"2024-04-2{n % 3} 10:{n:02d}:00") for n in range(12)]
    fake.statistics_per_window, fake.window_s = 3, 3600.0  # the fourth page is refused
    api = for_account(accounts.get_account(ACCOUNT), sleep=lambda _: None)
    api.page_limit = 2
    date_from, date_to = datetime(2024, 4, 20, tzinfo=UTC), datetime(2024, 4, 23, tzinfo=UTC)
    first = backfill_feature.run(ACCOUNT, "zadarma", date_from, date_to, deliver=False, api=api)
    assert first.status == "rate_limited" and 0 < first.stored < 12
    fake.window_s = 0.0  # the limit's window has passed
    second = backfill_feature.run(ACCOUNT, "zadarma", date_from, date_to, deliver=False, api=api)
    assert second.status == "complete" and second.resumed
    assert first.stored + second.stored == 12
    assert (
        backfill_feature.run(ACCOUNT, "zadarma", date_from, date_to, deliver=False, api=api).status
        == "already_complete"
    )
    assert all(calls.get_call(ACCOUNT, f"in_bf{n:03d}") for n in range(12))


def test_click_to_call_asks_for_a_callback_from_the_managers_extension(fake: FakeZadarma, now: list[datetime]) -> None:
    account = accounts.get_account(ACCOUNT)
    user = next(u for u in account.settings.users if u.pbx_user == "101")
    make_call(account, user, "+49 30 777888", card=False)
    assert fake.callbacks == [{"from": "101", "to": "4930777888", "sip": "101", "format": "json"}]


def test_the_user_sync_lists_the_extensions(fake: FakeZadarma, now: list[datetime]) -> None:
    report = sync_users(ACCOUNT)
    assert report.mapped_seen == ["100", "101"] and report.unmapped == ["102"]
