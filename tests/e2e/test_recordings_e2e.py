"""Recordings (docs/accounts.md, "Recordings") end to end through the local runtime over HTTP: a history whose link points to
a local file server → the worker (driven by the runtime's queue driver) → the emulated bucket → the
MiniCRM and retailCRM playback URLs → the presigned URL, with seeking."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from callbridge.features.recordings.playback import signature
from callbridge_local.testing import LocalBridge, running_bridge
from tests.integration.recording_server import RecordingServer, Reply
from tests.support import form, seed_history

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
USER, PASSWORD = "minicrm-e2e", "e2e-recordings-pass-0001"
TOKEN = "e2e-recordings-token-0001"
AUDIO = random.Random(11).randbytes(300_000)

ACCOUNT = """\
account: {name}
phone_region: RU
pbx:
  kind: cloudpbx
  crm_tokens: [{token}]
recordings:
  basic_auth: {{username: {user}, password: {password}}}
  allowed_ips: {ips}
  allow_hosts: ["127.0.0.1:{port}"]   # the test's file server (that port only): never on AWS
"""


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory, server: RecordingServer) -> Iterator[LocalBridge]:
    directory: Path = tmp_path_factory.mktemp("accounts")
    for name, ips in (("rec", "[]"), ("rec2", "[]"), ("recip", "[195.228.75.210, 195.228.75.211]")):
        text = ACCOUNT.format(name=name, token=TOKEN, user=USER, password=PASSWORD, ips=ips, port=server.port)
        (directory / f"{name}.yaml").write_text(text, encoding="utf-8")
    with running_bridge(directory, params={"RecordingRetryBaseSeconds": "0"}) as running:
        yield running


@pytest.fixture(scope="module")
def server() -> Iterator[RecordingServer]:
    running = RecordingServer().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(bridge: LocalBridge) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=bridge.base_url, timeout=30) as http:
        yield http


def history(client: httpx.Client, account: str, call_id: str, link: str) -> None:
    body = form(**seed_history(callid=call_id, link=link, crm_token=TOKEN))
    response = client.post(
        f"/v1/{account}/cloudpbx", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 200, response.text


def drain(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/_local/queues/drain", params={"timeout": "20"})
    assert response.status_code == 200, response.text
    functions: dict[str, dict[str, Any]] = response.json()["functions"]
    return functions["RecordingFetchFunctionFetch"]


def call_item(bridge: LocalBridge, account: str, call_id: str) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer

    item = bridge.client("dynamodb").get_item(
        TableName=bridge.env["CALLS_TABLE"],
        Key={"pk": {"S": f"CALL#{account}#{call_id}"}, "sk": {"S": "CALL"}},
        ConsistentRead=True,
    )["Item"]
    return {k: TypeDeserializer().deserialize(v) for k, v in item.items()}


def signed_path(bridge: LocalBridge, account: str, call_id: str, expires: int) -> str:
    prefix = bridge.env["SSM_PREFIX"]
    key = bridge.client("ssm").get_parameter(
        Name=f"{prefix}/accounts/{account}/recordings_signing_key", WithDecryption=True
    )["Parameter"]["Value"]
    sig = signature(key, account, call_id, expires)
    return f"/v1/{account}/recordings/{quote(call_id, safe='')}?exp={expires}&sig={sig}"


@pytest.fixture(scope="module")
def stored(bridge: LocalBridge, client: httpx.Client, server: RecordingServer) -> str:
    link = server.route("/calls/E2E-REC-1.mp3", Reply(body=AUDIO, headers={"Content-Type": "audio/mpeg"}))
    history(client, "rec", "E2E-REC-1", link)
    assert drain(client)["processed"] >= 1
    return "E2E-REC-1"


def test_the_file_is_in_the_bucket_byte_for_byte(bridge, stored):
    call = call_item(bridge, "rec", stored)
    assert call["recording_state"] == "stored"
    obj = bridge.client("s3").get_object(Bucket=bridge.env["RECORDINGS_BUCKET"], Key=call["recording"]["key"])
    assert obj["Body"].read() == AUDIO


def test_minicrm_url_with_basic_auth_redirects_to_the_bytes_and_seeks(client, stored):
    response = client.get("/v1/rec/recordings", params={"Rec": stored}, auth=(USER, PASSWORD))
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith("http://127.0.0.1:")  # the emulated S3, not AWS
    played = httpx.get(location, timeout=10)
    assert (played.status_code, played.headers["content-type"]) == (200, "audio/mpeg")
    assert played.content == AUDIO
    ranged = httpx.get(location, headers={"Range": "bytes=10-99"}, timeout=10)
    assert ranged.status_code == 206
    assert ranged.content == AUDIO[10:100]
    # curl -L: the redirect followed in one go.
    followed = client.get("/v1/rec/recordings", params={"Rec": stored}, auth=(USER, PASSWORD), follow_redirects=True)
    assert followed.content == AUDIO


def test_signed_retailcrm_url_redirects_to_the_bytes(bridge, client, stored):
    response = client.get(signed_path(bridge, "rec", stored, int(time.time()) + 600))
    assert response.status_code == 302
    played = httpx.get(response.headers["location"], timeout=10)
    assert (played.status_code, played.headers["content-type"], played.content) == (200, "audio/mpeg", AUDIO)


def test_refusals(bridge, client, stored):
    not_found = {"error": "Recording not found"}
    wrong = client.get("/v1/rec/recordings", params={"Rec": stored}, auth=(USER, "wrong-password"))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")
    # The gateway passes the real source address, 127.0.0.1: not MiniCRM's. Refused exactly like
    # wrong credentials, so that the answer does not reveal an account with an allowlist.
    outside = client.get("/v1/recip/recordings", params={"Rec": stored}, auth=(USER, PASSWORD))
    assert outside.status_code == 401
    assert (outside.status_code, outside.text) == (wrong.status_code, wrong.text)
    unknown = client.get("/v1/rec/recordings", params={"Rec": "NO-SUCH-CALL"}, auth=(USER, PASSWORD))
    foreign = client.get("/v1/rec2/recordings", params={"Rec": stored}, auth=(USER, PASSWORD))
    assert (unknown.status_code, unknown.json()) == (404, not_found)
    assert (foreign.status_code, foreign.json()) == (404, not_found)
    expired = client.get(signed_path(bridge, "rec", stored, int(time.time()) - 1))
    assert expired.status_code == 401
    good = signed_path(bridge, "rec", stored, int(time.time()) + 600)
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert client.get(tampered).status_code == 401


def test_two_failures_then_success_store_once_and_always_failing_ends_in_the_dlq(bridge, client, server):
    busy = Reply(status=503, body=b"busy")
    flaky = server.route(
        "/calls/flaky.mp3", busy, busy, Reply(body=AUDIO[:5000], headers={"Content-Type": "audio/wav"})
    )
    down = server.route("/calls/down.mp3", Reply(status=503, body=b"down"))
    history(client, "rec", "E2E-FLAKY", flaky)
    history(client, "rec", "E2E-DOWN", down)
    drain(client)
    assert server.hits["/calls/flaky.mp3"] == 3
    flaky_call = call_item(bridge, "rec", "E2E-FLAKY")
    assert (flaky_call["recording_state"], flaky_call["recording"]["content_type"]) == ("stored", "audio/wav")
    assert server.hits["/calls/down.mp3"] == 5
    down_call = call_item(bridge, "rec", "E2E-DOWN")
    assert down_call["recording_state"] == "unavailable"
    assert down_call["final"] is True and down_call["outcome"] == "answered"
    sqs = bridge.client("sqs")
    policy = sqs.get_queue_attributes(QueueUrl=bridge.env["RECORDING_QUEUE_URL"], AttributeNames=["RedrivePolicy"])
    dlq_name = json.loads(policy["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"].rsplit(":", 1)[1]
    dlq = sqs.get_queue_url(QueueName=dlq_name)["QueueUrl"]
    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10)["Messages"]]
    assert bodies == [{"account": "rec", "call_id": "E2E-DOWN"}]
