"""Bad input from outside, through the Lambda handlers against moto: a documented 4xx (never a 503
and a stack trace) for what the caller got wrong, and a stored call for whatever a PBX reports with
a valid secret, however odd its numbers (docs/clicktocall.md, docs/accounts.md "Recordings",
docs/sources.md "telediscount")."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

import make_call
import pbx_webhook as telediscount
import recordings
from callbridge.core import accounts
from callbridge.core.config import AccountConfig, load_account_file
from callbridge.features.admin import apply_account
from callbridge.features.recordings import playback
from callbridge.store import calls
from tests.support import http_event

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
TD_SECRET = "td-webhook-secret-0001"
NOT_JSON = (400, {"error": "The body is not a JSON document in UTF-8"})
BAD_SIGNATURE = (401, {"error": "Invalid or expired signature"})


def _answer(response: dict[str, Any]) -> tuple[int, Any]:
    return int(response["statusCode"]), json.loads(response["body"])


def post_calls(body: str, *, account: str = "demo", content_type: str = "application/json", b64: bool = False) -> Any:
    event = http_event(f"/v1/{account}/calls", body, content_type=content_type, account=account)
    event["isBase64Encoded"] = b64
    return _answer(make_call.handler(event, None))


@pytest.mark.parametrize("account", ["demo", "no-such-account"])
def test_a_body_that_is_not_json_is_a_4xx_for_any_account(
    cloud: dict[str, str], account: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = '{"user": "andy", "phone": "+79101234567"}'
    assert post_calls(good, account=account, content_type="text/plain") == (
        415,
        {"error": "Content-Type must be application/json"},
    )
    assert post_calls(good, account=account, content_type="application/x-www-form-urlencoded")[0] == 415
    assert post_calls("[" * 100_000, account=account) == NOT_JSON
    assert post_calls("{" * 100_000, account=account) == NOT_JSON
    not_utf8 = base64.b64encode(b'{"user": "\xff", "phone": "1"}').decode()
    assert post_calls(not_utf8, account=account, b64=True) == NOT_JSON
    assert post_calls("not base64!", account=account, b64=True) == NOT_JSON
    assert post_calls("{", account=account) == NOT_JSON
    assert post_calls("", account=account) == NOT_JSON
    invalid = post_calls('{"user": "andy"}', account=account)
    assert invalid == (422, {"error": "Invalid request", "details": ["phone: Field required"]})
    assert post_calls("[1]", account=account)[0] == 422
    assert post_calls('{"user": "\\ud800", "phone": "1"}', account=account)[0] == 422
    # A well-formed body still reaches the key check: JSON with a charset parameter is JSON.
    assert post_calls(good, account=account, content_type="application/json; charset=utf-8")[0] == 401
    assert "Traceback" not in capsys.readouterr().out


def _tele_account() -> AccountConfig:
    data = load_account_file(ROOT / "accounts" / "demo.yaml").model_dump(mode="python")
    data["account"] = "tele"
    data["pbx"] = {"kind": "telediscount", "api_key": "td-api-key-000000001", "webhook_secret": TD_SECRET}
    data["users"] = [{"pbx_user": "olga", "sip_account": "SIP/0000000672"}]
    return AccountConfig.model_validate(data)


def finished(**fields: str) -> tuple[int, Any]:
    path = f"/v1/tele/telediscount/{TD_SECRET}/finished"
    params = {
        "num_a": "79039998877",
        "num_m": "79037778899",
        "num_b": "SIP/0000000672",
        "setup_time": "1714554000",
        "connection_time": "12",
        "waiting_time": "5",
        **fields,
    }
    event = {
        "version": "2.0",
        "routeKey": "GET /v1/{account}/telediscount/{secret}/finished",
        "rawPath": path,
        "rawQueryString": urlencode(params),
        "headers": {"host": "api.example.com", "user-agent": "telediscount"},
        "queryStringParameters": params,
        "pathParameters": {"account": "tele", "secret": TD_SECRET},
        "requestContext": {"http": {"method": "GET", "path": path, "sourceIp": "203.0.113.20"}},
        "isBase64Encoded": False,
    }
    return _answer(telediscount.handler(event, None))


def test_telediscount_finished_with_many_digit_numbers_is_stored_flagged(cloud: dict[str, str]) -> None:
    apply_account(_tele_account())
    accounts.clear_account_cache()
    many = "7" + "9" * 399
    ok = (200, {"result": "OK"})

    assert finished(api_call_id="TD-LONG-A", num_a=many) == ok
    call = calls.get_call("tele", "TD-LONG-A")
    assert call is not None and "phone_unparsed" in call["flags"]
    assert call["phone"] == call["phone_raw"] and call["phone_raw"].startswith("7999")  # kept as sent, not E.164

    assert finished(api_call_id="TD-LONG-T", connection_time=many) == ok
    call = calls.get_call("tele", "TD-LONG-T")
    assert call is not None and call["phone"] == "+79039998877"
    assert "duration_unparsed" in call["flags"] and int(call["duration"]) == 0
    assert str(call["connection_time_raw"]).startswith("7999")

    assert finished(api_call_id="TD-LONG-W", waiting_time=many, setup_time="x") == ok
    call = calls.get_call("tele", "TD-LONG-W")
    assert call is not None and int(call["duration"]) == 12
    assert {"duration_unparsed", "start_unparsed"} <= set(call["flags"])

    assert finished(api_call_id="TD-INF", connection_time="1e400", waiting_time="1e300") == ok
    assert finished(api_call_id="TD-SUP", setup_time="²" * 10) == ok  # Unicode digits are no time
    assert finished(api_call_id="TD-SUP", setup_time="²" * 10) == ok  # a retry changes nothing
    assert all(calls.get_call("tele", call_id) is not None for call_id in ("TD-INF", "TD-SUP"))


def test_a_refused_telediscount_record_is_logged_under_its_account_and_event(cloud: dict[str, str]) -> None:
    """The edge binds the account of every recorded webhook and the package adds what it names, so
    the warning of a record we refuse says whose it was, and nothing of the secret path."""
    import io

    from callbridge.infra.observability import logger

    apply_account(_tele_account())
    accounts.clear_account_cache()
    written = io.StringIO()  # Powertools keeps the stdout it was created with: read its own stream
    stream = logger().registered_handler.stream  # type: ignore[attr-defined]
    logger().registered_handler.stream = written  # type: ignore[attr-defined]
    try:
        assert finished(api_call_id="")[0] == 400
    finally:
        logger().registered_handler.stream = stream  # type: ignore[attr-defined]
    lines = [json.loads(line) for line in written.getvalue().splitlines() if line.startswith("{")]
    [refused] = [line for line in lines if line["message"] == "telediscount webhook rejected"]
    assert (refused["account"], refused["telediscount_event"]) == ("tele", "finished")
    assert TD_SECRET not in written.getvalue()


def signed(url: str) -> tuple[int, Any]:
    path, _, query = url.partition("?")
    raw_path = path.split("://", 1)[1].split("/", 1)[1]
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    event = {
        "version": "2.0",
        "routeKey": "GET /v1/{account}/recordings/{call_id}",
        "rawPath": "/" + raw_path,
        "rawQueryString": query,
        "headers": {"host": "api.example.com"},
        "queryStringParameters": params,
        "pathParameters": {"account": "demo", "call_id": raw_path.rsplit("/", 1)[1]},
        "requestContext": {
            "http": {"method": "GET", "path": "/" + raw_path, "sourceIp": "203.0.113.10"},
            "requestId": "req",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    return _answer(recordings.handler(event, None))


def test_signed_url_exp_must_be_ascii_digits_within_the_longest_lifetime(cloud: dict[str, str]) -> None:
    url = playback.signed_recording_url("https://x", "demo", "NO-SUCH-CALL", ttl=60)
    assert signed(url) == (404, {"error": "Recording not found"})  # a good signature gets this far
    sig = url.split("sig=")[1]
    for exp in ("²", "²" * 10, "١٧١٤٥٥٤٠٠٠", "9" * 5000, "9" * 13, str(int(time.time()) + 20 * 365 * 86400)):
        assert signed(f"https://x/v1/demo/recordings/NO-SUCH-CALL?exp={exp}&sig={sig}") == BAD_SIGNATURE, exp
    # Signed by us with the account's key, but further ahead than any recording is kept: refused alike.
    now = time.time()
    beyond = playback.MAX_LINK_TTL_S + 3600
    too_long = playback.signed_recording_url("https://x", "demo", "NO-SUCH-CALL", ttl=beyond, now=now)
    assert signed(too_long) == BAD_SIGNATURE
    longest = playback.signed_recording_url("https://x", "demo", "NO-SUCH-CALL", ttl=playback.MAX_LINK_TTL_S)
    assert signed(longest) == (404, {"error": "Recording not found"})
