"""`callbridge calls list|show` and `recordings retry` against calls sent over HTTP to the local runtime."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.support import form, seed_event, seed_history

FORM = {"content-type": "application/x-www-form-urlencoded"}
# A private address: the worker refuses it (SSRF guard), so the recording ends up "unavailable".
BLOCKED_LINK = "http://127.0.0.1:9/rec.mp3"


def post(bridge: Any, fields: dict[str, Any]) -> None:
    response = httpx.post(bridge.url("/v1/demo/cloudpbx"), content=form(**fields), headers=FORM, timeout=10)
    assert response.status_code == 200, response.text


def drain(bridge: Any) -> dict[str, Any]:
    response = httpx.post(bridge.url("/_local/queues/drain?timeout=30"), timeout=40)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


@pytest.fixture(scope="module")
def call_id(bridge: Any) -> str:
    call = "CLI-CALL-0001"
    post(bridge, seed_event("INCOMING", callid=call))
    post(bridge, seed_event("ACCEPTED", callid=call))
    post(bridge, seed_history(callid=call, link=BLOCKED_LINK, duration="42"))
    drain(bridge)
    return call


def test_calls_list_shows_the_call(callbridge, call_id):
    result = callbridge("calls", "list", "--account", "demo")
    assert result.exit_code == 0, result.output
    assert call_id in result.output and "answered" in result.output

    rows = json.loads(callbridge("calls", "list", "-a", "demo", "--json").output)
    assert any(r["call_id"] == call_id and r["duration"] == 42 for r in rows)


def test_calls_json_is_json_sets_as_sorted_lists(callbridge, call_id):
    """The store keeps `users_rang` and `flags` as string sets: a script gets JSON lists, not the
    Python repr of a set ("{'andy'}")."""
    rows = json.loads(callbridge("calls", "list", "-a", "demo", "--json").output)
    [row] = [r for r in rows if r["call_id"] == call_id]
    assert row["users_rang"] == ["andy"]
    for name in ("users_rang", "flags"):
        if name in row:
            assert isinstance(row[name], list) and row[name] == sorted(row[name]), (name, row[name])

    shown = json.loads(callbridge("calls", "show", call_id, "-a", "demo", "--json").output)
    assert shown["call"]["users_rang"] == ["andy"]


def test_json_output_writes_dynamodb_types_as_json(capsys):
    """Every `--json` of the CLI goes through render.as_json: sets, Decimals and nested ones too."""
    from decimal import Decimal

    from callbridge_cli.render import as_json

    as_json({"flags": {"b", "a"}, "n": Decimal("42"), "x": Decimal("1.5"), "deep": [{"s": frozenset({2, 1})}]})
    assert json.loads(capsys.readouterr().out) == {"flags": ["a", "b"], "n": 42, "x": 1.5, "deep": [{"s": [1, 2]}]}


def test_calls_show_has_timeline_deliveries_and_recording_state(callbridge, call_id):
    result = callbridge("calls", "show", call_id, "--account", "demo")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"call {call_id} (account demo)" in out
    assert "outcome: answered" in out and "duration: 42" in out
    for webhook in ("event", "history"):
        assert webhook in out
    assert "INCOMING" in out and "ACCEPTED" in out
    assert "deliveries: none" in out
    assert "recording: unavailable" in out

    data = json.loads(callbridge("calls", "show", call_id, "-a", "demo", "--json").output)
    assert [e["cmd"] for e in data["timeline"]].count("event") == 2
    assert data["recording"]["state"] == "unavailable"
    assert "demo-crm-token-0001" not in json.dumps(data)  # the timeline keeps payloads without secrets


def test_calls_show_unknown_call_fails(callbridge):
    result = callbridge("calls", "show", "NO-SUCH-CALL", "-a", "demo")
    assert result.exit_code == 1 and "no call 'NO-SUCH-CALL' in account demo" in result.output


def test_calls_need_an_account_when_there_are_several(callbridge, bridge, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(
        "account: cli-other\nphone_region: RU\npbx: {kind: cloudpbx, crm_tokens: [cli-other-token-00001]}\n"
    )
    assert callbridge("accounts", "apply", str(other)).exit_code == 0
    result = callbridge("calls", "list")
    assert result.exit_code == 2 and "pass --account" in result.output


def test_recordings_retry_requeues_unavailable_recordings(callbridge, bridge, call_id):
    dry = callbridge("recordings", "retry", "--account", "demo", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert call_id in dry.output and "unavailable" in dry.output

    # Mark the call so that we see the worker run again (the runtime's queue driver may take the
    # message before our drain does).
    key = {"pk": {"S": f"CALL#demo#{call_id}"}, "sk": {"S": "CALL"}}
    dynamodb = bridge.client("dynamodb")
    table = bridge.env["CALLS_TABLE"]
    dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET recording_error = :m",
        ExpressionAttributeValues={":m": {"S": "marker"}},
    )
    result = callbridge("recordings", "retry", "--account", "demo")
    assert result.exit_code == 0, result.output
    assert "recording fetches queued" in result.output
    drain(bridge)
    item = dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]
    assert item["recording_state"]["S"] == "unavailable"
    assert item["recording_error"]["S"] != "marker"  # fetched (and refused) again

    assert "no recordings to fetch again" in callbridge("recordings", "retry", "-a", "nobody").output


def test_the_runtime_logged_metrics_and_call_ids(bridge, call_id):
    lines = [json.loads(x) for x in bridge.output().splitlines() if x.startswith("{")]
    ingested = [x for x in lines if "CallsIngested" in x and x.get("Source") == "cloudpbx"]
    assert any(x["Outcome"] == "answered" for x in ingested)
    failed = [x for x in lines if "RecordingsFailed" in x]
    assert failed and failed[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "CallBridge"
    fetch_logs = [x for x in lines if x.get("message") == "recording fetch done" and x.get("call_id") == call_id]
    assert fetch_logs and all(x["account"] == "demo" for x in fetch_logs)
