"""Where the call history's playback link points when PublicBaseUrl is empty: the API's own address,
as API Gateway received the request. The template cannot tell CallHistoryFunction its API's URL (the
API's routes name the function, and the reverse reference is a cycle CloudFormation refuses:
tests/local/test_transformed_template.py), so the handler reads it from requestContext."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import call_history
from callbridge.core.config import load_account_file
from callbridge.core.record import FinalCall
from callbridge.core.terms import Direction, Marker, Outcome, StartSource
from callbridge.features.admin import apply_account
from callbridge.infra import settings
from callbridge.store import calls

ROOT = Path(__file__).resolve().parents[2]
KEY = "links-api-key-000000000001"
API_DOMAIN = "a1b2c3d4e5.execute-api.eu-central-1.amazonaws.com"


@pytest.fixture
def stored_call(cloud: dict[str, str], tmp_path: Path) -> str:
    account_file = tmp_path / "links.yaml"
    demo = (ROOT / "accounts" / "demo.yaml").read_text().replace("account: demo", "account: links")
    account_file.write_text(demo.replace("  - demo-api-key-0001\n", f"  - {KEY}\n"))
    apply_account(load_account_file(account_file))
    attributes = FinalCall(
        call_id="LINK-1",
        source="cloudpbx",
        marker=Marker("history", "in", "andy"),
        direction=Direction.IN,
        outcome=Outcome.ANSWERED,
        phone="+79101234567",
        phone_raw="79101234567",
        started_at="2026-11-01T09:00:00Z",
        start_source=StartSource.PBX,
        duration=42,
        user="andy",
        raw={"callid": "LINK-1"},
    ).attributes("links", "2026-11-01T09:01:00Z")
    attributes.update(recording_state="stored", recording={"size": 3, "content_type": "audio/mpeg"})
    calls.batch_put([calls.call_item("links", "LINK-1", attributes)])
    return "LINK-1"


def show(call_id: str, *, stage: str = "$default") -> dict[str, Any]:
    event = json.loads((ROOT / "events" / "CallHistoryFunction.list-without-key.json").read_text())
    # On a named stage API Gateway's rawPath starts with the stage, which the resolver strips.
    path = ("" if stage == "$default" else f"/{stage}") + f"/v1/links/calls/{call_id}"
    event.update(routeKey="GET /v1/{account}/calls/{callid}", rawPath=path, rawQueryString="")
    event.pop("queryStringParameters", None)
    event["headers"] = {"host": API_DOMAIN, "authorization": f"Bearer {KEY}"}
    event["pathParameters"] = {"account": "links", "callid": call_id}
    context = event["requestContext"]
    context.update(domainName=API_DOMAIN, domainPrefix=API_DOMAIN.split(".")[0], stage=stage)
    context["routeKey"] = event["routeKey"]
    context["http"]["path"] = path
    answer = call_history.handler(event, None)
    assert answer["statusCode"] == 200, answer
    body: dict[str, Any] = json.loads(answer["body"])
    return body


def use_base_url(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    monkeypatch.delenv("API_URL", raising=False)
    if value is None:
        monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("PUBLIC_BASE_URL", value)
    settings.reset_settings()


def test_without_public_base_url_the_link_points_at_the_api_the_request_came_to(stored_call, monkeypatch):
    use_base_url(monkeypatch, None)
    url = show(stored_call)["recording"]["playback_url"]
    assert url.startswith(f"https://{API_DOMAIN}/v1/links/recordings/LINK-1?"), url


def test_a_named_stage_is_part_of_the_link(stored_call, monkeypatch):
    use_base_url(monkeypatch, "")
    url = show(stored_call, stage="live")["recording"]["playback_url"]
    assert url.startswith(f"https://{API_DOMAIN}/live/v1/links/recordings/LINK-1?"), url


def test_public_base_url_wins_over_the_request(stored_call, monkeypatch):
    use_base_url(monkeypatch, "https://calls.example.com")
    url = show(stored_call)["recording"]["playback_url"]
    assert url.startswith("https://calls.example.com/v1/links/recordings/LINK-1?"), url
