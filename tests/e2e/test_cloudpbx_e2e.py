"""A Cloud PBX talking to the local runtime over HTTP, exactly as it would to the deployed API."""

from __future__ import annotations

import base64
import json
import random
import string
import time
from typing import Any

import boto3
import httpx
import pytest

from tests.support import DEMO_TOKEN, form, seed_contact, seed_event, seed_history

pytestmark = pytest.mark.e2e
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def client(bridge: Any):
    with httpx.Client(base_url=bridge.base_url, timeout=10) as http:
        yield http


@pytest.fixture(scope="module")
def dynamodb(bridge: Any):
    return boto3.client(
        "dynamodb",
        endpoint_url=bridge.aws_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def get_call(bridge: Any, dynamodb: Any, call_id: str) -> dict[str, Any] | None:
    from boto3.dynamodb.types import TypeDeserializer

    item = dynamodb.get_item(
        TableName=bridge.env["CALLS_TABLE"],
        Key={"pk": {"S": f"CALL#demo#{call_id}"}, "sk": {"S": "CALL"}},
        ConsistentRead=True,
    ).get("Item")
    return {k: TypeDeserializer().deserialize(v) for k, v in item.items()} if item else None


def test_health(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_seed_requests_to_the_single_address_get_the_seed_answers(bridge, client, dynamodb):
    call_id = "E2E-SEED-1"
    for fields in (
        seed_event("INCOMING", callid=call_id),
        seed_contact(callid=call_id),
        seed_event("ACCEPTED", callid=call_id),
        seed_event("COMPLETED", callid=call_id),
    ):
        response = client.post("/v1/demo/cloudpbx", content=form(**fields), headers=FORM)
        assert response.status_code == 200, response.text
        if fields["cmd"] == "contact":
            assert response.headers["content-type"].startswith("application/json")
            assert response.json() == {"contact_name": "Manager of Horns and Hooves LLC", "responsible": "andy"}
    response = client.post(
        "/v1/demo/cloudpbx", content=form(**seed_history(callid=call_id, phone="89101234567")), headers=FORM
    )
    assert response.status_code == 200
    call = get_call(bridge, dynamodb, call_id)
    assert call is not None
    assert call["phone"] == "+79101234567"
    assert call["outcome"] == "answered" and call["final"] is True
    assert call["started_at"].endswith("Z") and call["start_source"] == "first_event"


def test_json_body_works_like_a_form(bridge, client, dynamodb):
    response = client.post("/v1/demo/cloudpbx", json=seed_history(callid="E2E-JSON-1", duration=5))
    assert response.status_code == 200
    assert get_call(bridge, dynamodb, "E2E-JSON-1")["duration"] == 5


def test_missed_call_is_stored_as_missed(bridge, client, dynamodb):
    call_id = "E2E-MISSED-1"
    for fields in (
        seed_event("INCOMING", "andy", callid=call_id),
        seed_event("INCOMING", "daria", callid=call_id),
        seed_event("CANCELLED", "andy", callid=call_id),
        seed_event("CANCELLED", "daria", callid=call_id),
    ):
        assert client.post("/v1/demo/cloudpbx", content=form(**fields), headers=FORM).status_code == 200
    deadline = time.monotonic() + 20
    call = None
    while time.monotonic() < deadline:
        call = get_call(bridge, dynamodb, call_id)
        if call and call.get("final"):
            break
        time.sleep(0.3)
    assert call is not None and call.get("final"), call
    assert call["outcome"] == "missed"
    assert call["users_rang"] == {"andy", "daria"}


def test_wrong_token_and_bad_fields_get_the_exact_bodies(client):
    response = client.post("/v1/demo/cloudpbx", content=form(**seed_history(crm_token="nope")), headers=FORM)
    assert (response.status_code, response.json()) == (401, {"error": "Invalid token"})
    response = client.post("/v1/demo/cloudpbx", content=form(**seed_history(duration="long")), headers=FORM)
    assert (response.status_code, response.json()) == (400, {"error": "Invalid parameters"})
    response = client.post("/v1/demo/cloudpbx/history", content=form(**seed_history(callid=None)), headers=FORM)
    assert (response.status_code, response.json()) == (400, {"error": "Invalid parameters"})


def _random_text(rng: random.Random, n: int) -> str:
    alphabet = string.printable + "абвгд€😀\x00\u202e"
    return "".join(rng.choice(alphabet) for _ in range(n))


def _random_request(rng: random.Random) -> tuple[str, bytes, dict[str, str]]:
    path = rng.choice(
        [
            "/v1/demo/cloudpbx",
            "/v1/demo/cloudpbx/history",
            "/v1/demo/cloudpbx/event",
            "/v1/demo/cloudpbx/contact",
            "/v1/nobody/cloudpbx",
            "/v1/%00/cloudpbx",
        ]
    )
    fields: dict[str, Any] = rng.choice([seed_history(), seed_event("INCOMING"), seed_contact(), {}])
    fields = dict(fields)
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(
            [*(list(fields) or ["cmd"]), "start", "link", "type", "status", "duration", _random_text(rng, 3)]
        )
        fields[key] = rng.choice(
            [
                "",
                _random_text(rng, rng.randint(1, 40)),
                str(rng.randint(-(10**12), 10**12)),
                "1e309",
                "NaN",
                "history",
                "event",
                "contact",
                "IN",
                DEMO_TOKEN,
                "20170703T121110Z",
            ]
        )
    if rng.random() < 0.2:
        fields.pop(rng.choice(list(fields) or ["cmd"]), None)
    shape = rng.randint(0, 5)
    headers = {
        "content-type": rng.choice(
            [
                "application/x-www-form-urlencoded",
                "application/json",
                "text/plain",
                "application/octet-stream",
                "multipart/form-data; boundary=x",
                "",
            ]
        )
    }
    if shape == 0:
        body = form(**fields).encode()
    elif shape == 1:
        body = json.dumps(fields).encode()
    elif shape == 2:
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
    elif shape == 3:
        body = json.dumps(rng.choice([[1, 2], "x", 3, None, {"cmd": {"a": 1}}, {"cmd": ["history"]}])).encode()
    elif shape == 4:
        body = base64.b64encode(form(**fields).encode())
    else:
        body = (form(**fields) + "&" + _random_text(rng, 50)).encode("utf-8", "surrogatepass")
    return path, body, headers


def test_fuzzed_bodies_never_get_a_5xx(client):
    rng = random.Random(20261123)
    statuses: dict[int, int] = {}
    for _ in range(2500):
        path, body, headers = _random_request(rng)
        response = client.post(path, content=body, headers=headers)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code < 500, (path, body[:200], headers, response.text)
    # The fuzz reached every kind of answer, so it exercised the real paths and not only the errors.
    assert {200, 400, 401} <= set(statuses), statuses


def test_runtime_output_never_shows_a_token_outside_the_setup_lines(bridge, client):
    client.post("/v1/demo/cloudpbx", content=form(**seed_history(callid="E2E-LOG-1")), headers=FORM)
    client.post("/v1/demo/cloudpbx", content=form(**seed_history(crm_token="wrong-but-secret-looking")), headers=FORM)
    lines = [line for line in bridge.output().splitlines() if "crm_token" not in line]
    assert not [line for line in lines if DEMO_TOKEN in line]
    assert not [line for line in lines if "wrong-but-secret-looking" in line]
