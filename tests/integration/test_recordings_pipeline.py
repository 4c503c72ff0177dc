"""The recordings pipeline through its handlers, against moto in server mode: history → queued fetch →
worker → S3 → playback (MiniCRM Basic auth, retailCRM signed URL) → presigned URL. The file server is
on 127.0.0.1 (allowlisted for these accounts) and the fake network lets nothing but loopback out."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import httpx
import pytest

import cloudpbx
import recording_fetch
import recordings
from callbridge.core import accounts
from callbridge.core.config import AccountConfig, load_account_file
from callbridge.features.admin import apply_account
from callbridge.features.recordings import playback
from callbridge.features.recordings.worker import handle_message
from callbridge.infra import secrets, settings
from callbridge.store import calls
from callbridge_local.drivers import failed_message_ids, sqs_event
from tests.integration.recording_server import FakeNet, RecordingServer, Reply, guarded_network
from tests.support import DEMO_TOKEN, form, http_event, seed_history

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "minicrm-demo", "demo-recordings-pass-0001"
AUDIO = random.Random(3).randbytes(150_000)
SOURCE_IP = "203.0.113.10"  # the sourceIp of tests.support.http_event


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNet]:
    yield from guarded_network(monkeypatch)


@pytest.fixture
def server(net: FakeNet) -> Iterator[RecordingServer]:
    running = RecordingServer().start()
    try:
        yield running
    finally:
        running.stop()


def _account(name: str, port: int, **recordings_section: Any) -> AccountConfig:
    data = load_account_file(ROOT / "accounts" / "demo.yaml").model_dump(mode="python")
    data["account"] = name
    data["pbx"] = {"kind": "cloudpbx", "crm_tokens": [DEMO_TOKEN]}
    data["recordings"] = {
        "basic_auth": {"username": USER, "password": PASSWORD},
        "allow_hosts": [f"127.0.0.1:{port}"],  # the test's file server, that port only
        **recordings_section,
    }
    return AccountConfig.model_validate(data)


@pytest.fixture
def env(
    cloud: dict[str, str], net: FakeNet, server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.setenv("RECORDING_RETRY_BASE_SECONDS", "0")
    settings.reset_settings()
    apply_account(_account("demo", server.port))
    apply_account(_account("other", server.port))
    apply_account(_account("guarded", server.port, allowed_ips=["195.228.75.210", "195.228.75.211"]))
    apply_account(_account("office", server.port, allowed_ips=["203.0.113.0/24"]))
    accounts.clear_account_cache()
    secrets.reset_secret_cache()
    return cloud


def post_history(call_id: str, link: str, account: str = "demo") -> int:
    fields = seed_history(callid=call_id, link=link)
    response = cloudpbx.handler(http_event(f"/v1/{account}/cloudpbx", form(**fields), account=account), None)
    return int(response["statusCode"])


def drain(env: dict[str, str], limit: int = 20) -> dict[str, int]:
    """Plays Lambda's SQS event source for the worker: receive, invoke, delete what succeeded."""
    sqs = boto3.client("sqs")
    url = env["RECORDING_QUEUE_URL"]
    seen = {"received": 0, "failed": 0}
    for _ in range(limit):
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        if not messages:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            if int(attributes["ApproximateNumberOfMessagesNotVisible"]) == 0:
                break
            time.sleep(0.05)
            continue
        result = recording_fetch.handler(sqs_event(messages, "arn:aws:sqs:us-east-1:000000000000:q", "us-east-1"), None)
        failed = failed_message_ids(result, [m["MessageId"] for m in messages])
        seen["received"] += len(messages)
        seen["failed"] += len(failed)
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return seen


def dlq_messages(env: dict[str, str]) -> list[Any]:
    sqs = boto3.client("sqs")
    policy = sqs.get_queue_attributes(QueueUrl=env["RECORDING_QUEUE_URL"], AttributeNames=["RedrivePolicy"])
    arn = json.loads(policy["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"]
    dlq = sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[1])["QueueUrl"]
    return sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])


def get(path: str, query: str = "", *, auth: tuple[str, str] | None = (USER, PASSWORD), ip: str = SOURCE_IP) -> Any:
    account = path.split("/")[2]
    headers = {"host": "api.example.com"}
    if auth is not None:
        headers["authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    event = {
        "version": "2.0",
        "routeKey": "GET /v1/{account}/recordings",
        "rawPath": path,
        "rawQueryString": query,
        "queryStringParameters": dict(p.split("=", 1) for p in query.split("&") if "=" in p) if query else None,
        "headers": headers,
        "pathParameters": {"account": account},
        "requestContext": {
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": ip, "userAgent": "t"},
            "requestId": "req",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    return recordings.handler(event, None)


def minicrm(call_id: str, account: str = "demo", **kwargs: Any) -> Any:
    return get(f"/v1/{account}/recordings", f"Rec={quote(call_id, safe='')}", **kwargs)


def signed(url: str) -> Any:
    parts = urlsplit(url)
    return get(parts.path, parts.query, auth=None)


def stored_call(server: RecordingServer, env: dict[str, str], call_id: str, body: bytes = AUDIO) -> dict[str, Any]:
    link = server.route(f"/{quote(call_id, safe='')}.mp3", Reply(body=body, headers={"Content-Type": "audio/mpeg"}))
    assert post_history(call_id, link) == 200
    drain(env)
    call = calls.get_call("demo", call_id)
    assert call is not None and call["recording_state"] == "stored", call
    return call


# ---------------------------------------------------------------------------------------------
# Fetch
# ---------------------------------------------------------------------------------------------
def test_history_queues_a_fetch_and_the_worker_stores_the_file_byte_for_byte(env, server):
    call = stored_call(server, env, "REC-1")
    recording = call["recording"]
    assert recording["key"] == "demo/REC-1/recording.mp3"
    assert (recording["size"], recording["content_type"]) == (len(AUDIO), "audio/mpeg")
    obj = boto3.client("s3").get_object(Bucket=env["RECORDINGS_BUCKET"], Key=recording["key"])
    assert obj["Body"].read() == AUDIO
    assert obj["ContentType"] == "audio/mpeg"
    assert call["final"] is True and call["outcome"] == "answered"


def test_a_call_is_kept_at_least_as_long_as_its_recording(env, server):
    """The Calls table's TTL never removes a call before its recording: a recording is played back
    and erased by a number through its call. The stack keeps calls 400 days and recordings 365, so
    a call without a tier keeps its 400 days; an account whose tier is 10 years keeps its call that
    long and a week (the file is uploaded after the call)."""
    now = time.time()
    call = stored_call(server, env, "KEEP-1")
    assert abs(int(call["expires_at"]) - (now + 400 * 86400)) < 120
    apply_account(_account("demo", server.port, retention_days=3650))
    accounts.clear_account_cache()
    call = stored_call(server, env, "KEEP-2")
    assert call["recording"]["key"].startswith("_retention/3650d/")
    assert abs(int(call["expires_at"]) - (now + 3657 * 86400)) < 120


def test_a_call_erased_while_its_file_downloads_keeps_no_file(env, server, monkeypatch):
    """`callbridge recordings delete` may run while the worker downloads: the file it then stores
    must not outlive the call's erasure (features/erasure.py deletes what it finds, before)."""
    from callbridge.features.recordings import storage, worker
    from callbridge.store.updates import Update

    link = server.route("/ERASED-1.mp3", Reply(body=AUDIO, headers={"Content-Type": "audio/mpeg"}))
    assert post_history("ERASED-1", link) == 200
    download = storage.fetch_to_s3  # what the worker calls, by its own name

    def erased_meanwhile(*args: Any, **kwargs: Any) -> Any:
        stored = download(*args, **kwargs)
        calls.update_call("demo", "ERASED-1", Update().set(recording_state="erased").remove("recording_url"))
        return stored

    monkeypatch.setattr(worker, "fetch_to_s3", erased_meanwhile)
    drain(env)
    call = calls.get_call("demo", "ERASED-1")
    assert call is not None and call["recording_state"] == "erased" and "recording" not in call
    listed = boto3.client("s3").list_objects_v2(Bucket=env["RECORDINGS_BUCKET"], Prefix="demo/ERASED-1/")
    assert listed.get("KeyCount", 0) == 0


def test_a_repeated_history_queues_nothing_and_a_stored_call_is_not_fetched_again(env, server):
    stored_call(server, env, "REC-2")
    assert post_history("REC-2", server.url("/REC-2.mp3")) == 200
    assert drain(env)["received"] == 0
    assert handle_message(json.dumps({"account": "demo", "call_id": "REC-2"}), attempt=1, receipt_handle="").status == (
        "already_stored"
    )
    assert server.hits["/REC-2.mp3"] == 1


def test_a_history_without_an_http_link_queues_nothing(env):
    assert post_history("REC-3", "ftp://pbx/file.mp3") == 200
    assert drain(env)["received"] == 0
    assert "recording_state" not in (calls.get_call("demo", "REC-3") or {})


def test_two_failures_then_success_store_the_file_once(env, server):
    busy = Reply(status=503, body=b"busy")
    link = server.route("/flaky.mp3", busy, busy, Reply(body=AUDIO, headers={"Content-Type": "audio/mpeg"}))
    assert post_history("REC-4", link) == 200
    seen = drain(env)
    assert (seen["received"], seen["failed"]) == (3, 2)
    assert server.hits["/flaky.mp3"] == 3
    call = calls.get_call("demo", "REC-4")
    assert call["recording_state"] == "stored"
    listing = boto3.client("s3").list_objects_v2(Bucket=env["RECORDINGS_BUCKET"], Prefix="demo/REC-4/")
    assert [o["Key"] for o in listing["Contents"]] == ["demo/REC-4/recording.mp3"]
    assert dlq_messages(env) == []


def test_a_server_that_always_fails_ends_in_the_dlq_and_marks_the_call(env, server):
    link = server.route("/down.mp3", Reply(status=503, body=b"down"))
    assert post_history("REC-5", link) == 200
    seen = drain(env)
    assert (seen["received"], seen["failed"]) == (5, 5)  # maxReceiveCount of the template
    assert server.hits["/down.mp3"] == 5
    call = calls.get_call("demo", "REC-5")
    assert call["recording_state"] == "unavailable"
    assert call["recording_error"].startswith("gave up after 5 tries: TransientFetchError")
    assert call["final"] is True and call["outcome"] == "answered"  # the call itself is untouched
    assert [json.loads(m["Body"]) for m in dlq_messages(env)] == [{"account": "demo", "call_id": "REC-5"}]


def test_a_permanent_error_marks_unavailable_at_once(env, server, net):
    link = server.route("/gone.mp3", Reply(status=404, body=b"gone"))
    assert post_history("REC-6", link) == 200
    assert post_history("REC-7", "https://10.0.0.1/secret.mp3") == 200
    seen = drain(env)
    assert (seen["received"], seen["failed"]) == (2, 0)
    assert calls.get_call("demo", "REC-6")["recording_error"].startswith("PermanentFetchError")
    assert calls.get_call("demo", "REC-7")["recording_error"].startswith("BlockedAddress")
    assert ("10.0.0.1", 443) not in net.connects
    assert dlq_messages(env) == []


def test_loopback_is_refused_for_an_account_that_does_not_allow_it(env, server):
    config = _account("strict", server.port)
    apply_account(config.model_copy(update={"recordings": config.recordings.model_copy(update={"allow_hosts": []})}))
    link = server.route("/x.mp3", Reply(body=AUDIO))
    assert post_history("REC-8", link, account="strict") == 200
    drain(env)
    assert calls.get_call("strict", "REC-8")["recording_state"] == "unavailable"
    assert server.hits["/x.mp3"] == 0


def test_a_malformed_message_is_dropped(env):
    assert handle_message("not json", attempt=1, receipt_handle="").status == "malformed"


# ---------------------------------------------------------------------------------------------
# Playback
# ---------------------------------------------------------------------------------------------
def _follow(response: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    assert response["statusCode"] == 302, response
    return httpx.get(response["headers"]["Location"], headers=headers or {}, timeout=10)


def test_minicrm_url_redirects_to_the_bytes_and_seeking_works(env, server):
    stored_call(server, env, "PLAY-1")
    response = minicrm("PLAY-1")
    played = _follow(response)
    assert played.status_code == 200
    assert played.content == AUDIO
    assert played.headers["content-type"] == "audio/mpeg"
    ranged = _follow(minicrm("PLAY-1"), {"Range": "bytes=10-99"})
    assert ranged.status_code == 206
    assert ranged.content == AUDIO[10:100]


def test_signed_url_redirects_to_the_bytes(env, server):
    stored_call(server, env, "PLAY/2 +x")
    url = playback.signed_recording_url("https://api.example.com", "demo", "PLAY/2 +x", ttl=600)
    assert "/v1/demo/recordings/PLAY%2F2%20%2Bx?exp=" in url
    played = _follow(signed(url))
    assert (played.status_code, played.content, played.headers["content-type"]) == (200, AUDIO, "audio/mpeg")


def test_direct_serving_of_a_small_file(env, server):
    stored_call(server, env, "PLAY-3")
    response = get("/v1/demo/recordings", "Rec=PLAY-3&direct=1")
    assert response["statusCode"] == 200 and response["isBase64Encoded"] is True
    assert response["headers"]["Content-Type"] == "audio/mpeg"
    assert base64.b64decode(response["body"]) == AUDIO


def _status(response: dict[str, Any]) -> tuple[int, str]:
    return response["statusCode"], response["body"]


NOT_FOUND = (404, '{"error": "Recording not found"}')


def test_refusals(env, server):
    stored_call(server, env, "PLAY-4")
    wrong = minicrm("PLAY-4", auth=(USER, "wrong-password"))
    assert wrong["statusCode"] == 401 and wrong["headers"]["WWW-Authenticate"].startswith("Basic")
    assert minicrm("PLAY-4", auth=None)["statusCode"] == 401
    assert minicrm("PLAY-4", auth=("someone", PASSWORD))["statusCode"] == 401
    assert minicrm("PLAY-4", account="nosuchaccount")["statusCode"] == 401
    # The source-IP allowlist: MiniCRM's addresses only, or a CIDR. Refused like wrong credentials
    # (test_refusals_do_not_tell_whether_the_account_exists).
    assert minicrm("PLAY-4", account="guarded")["statusCode"] == 401
    assert _status(minicrm("PLAY-4", account="guarded", ip="195.228.75.211")) == NOT_FOUND
    assert _status(minicrm("PLAY-4", account="office")) == NOT_FOUND
    # Unknown id, another account's id, nothing asked: one and the same 404.
    assert _status(minicrm("NO-SUCH-CALL")) == NOT_FOUND
    assert _status(minicrm("PLAY-4", account="other")) == NOT_FOUND
    assert _status(get("/v1/demo/recordings", "")) == NOT_FOUND
    # The account's own call whose recording is still being fetched (a realtime CRM has its link
    # already): a 404 that says to ask again, and when. To another account, the plain 404.
    assert post_history("PLAY-5", "https://pbx.example.com/later.mp3") == 200
    early = minicrm("PLAY-5")
    assert (early["statusCode"], json.loads(early["body"])) == (
        404,
        {"error": "Recording not stored yet", "retry": True},
    )
    assert early["headers"]["Retry-After"] == "10" and early["headers"]["Cache-Control"] == "no-store"
    assert _status(minicrm("PLAY-5", account="other")) == NOT_FOUND


def _answer(response: dict[str, Any]) -> tuple[int, str, dict[str, str]]:
    return response["statusCode"], response["body"], dict(response.get("headers") or {})


def test_refusals_do_not_tell_whether_the_account_exists(env, server):
    """An unknown account, an existing one with wrong credentials and one whose allowlist leaves
    the caller out: one and the same answer (status, body, headers), so nobody can probe accounts."""
    stored_call(server, env, "PLAY-8")
    unknown = _answer(minicrm("PLAY-8", account="nosuchaccount"))
    assert unknown[0] == 401 and unknown[2]["WWW-Authenticate"].startswith("Basic")
    assert _answer(minicrm("PLAY-8", auth=(USER, "wrong-password"))) == unknown
    assert _answer(minicrm("PLAY-8", account="guarded")) == unknown
    assert _answer(minicrm("PLAY-8", account="guarded", auth=(USER, "wrong-password"))) == unknown


def test_signature_refusals(env, server):
    stored_call(server, env, "PLAY-6")
    good = urlsplit(playback.signed_recording_url("https://x", "demo", "PLAY-6", ttl=60))
    assert signed(good.geturl())["statusCode"] == 302
    expired = playback.signed_recording_url("https://x", "demo", "PLAY-6", ttl=60, now=time.time() - 120)
    assert _status(signed(expired)) == (401, '{"error": "Invalid or expired signature"}')
    sig = good.query.split("sig=")[1]
    tampered = good.geturl().replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    assert signed(tampered)["statusCode"] == 401
    later = good.geturl().replace("exp=", "exp=1")  # a longer life is a different message
    assert signed(later)["statusCode"] == 401
    assert signed(good.geturl().replace("PLAY-6", "PLAY-7"))["statusCode"] == 401
    assert signed(good.geturl().split("?")[0])["statusCode"] == 401
    # Another account's key does not open this account's recordings, and vice versa.
    other = playback.signed_recording_url("https://x", "other", "PLAY-6", ttl=60)
    assert _status(signed(other)) == NOT_FOUND
    assert signed(other.replace("/v1/other/", "/v1/demo/"))["statusCode"] == 401
    unknown = playback.signed_recording_url("https://x", "demo", "NO-SUCH-CALL", ttl=60)
    assert _status(signed(unknown)) == NOT_FOUND


def test_the_signing_key_is_kept_across_applies(env, server):
    key = secrets.account_secrets("demo", force=True)[secrets.RECORDINGS_SIGNING_KEY]
    assert len(key) == 64
    apply_account(_account("demo", server.port))
    assert secrets.account_secrets("demo", force=True)[secrets.RECORDINGS_SIGNING_KEY] == key
