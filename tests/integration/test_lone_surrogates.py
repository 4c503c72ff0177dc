"""A JSON body may escape a lone surrogate (`"\\ud800"`), which no UTF-8 text can hold and nothing
can store: through the handler against moto, the Cloud PBX webhook answers it 400, never a 5xx that
the PBX would retry for ever (docs/cloudpbx.md, "Answers"). POST /calls answers such a body 422
(tests/integration/test_bad_input.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import cloudpbx
from callbridge.store import calls
from tests.support import DEMO_TOKEN, http_event

pytestmark = pytest.mark.timeout(60)
HISTORY = {
    "cmd": "history",
    "type": "in",
    "status": "Success",
    "phone": "79101234567",
    "user": "andy",
    "duration": "5",
    "crm_token": DEMO_TOKEN,
    "callid": "SURROGATE-1",
}


def answer(response: dict[str, Any]) -> tuple[int, Any]:
    body = response["body"]
    return int(response["statusCode"]), json.loads(body) if body else None


def post_json(handler: Any, path: str, body: str) -> tuple[int, Any]:
    return answer(handler(http_event(path, body, content_type="application/json"), None))


@pytest.mark.parametrize("where", ["user", "link", "a_field_we_do_not_know", "key"])
def test_a_cloudpbx_webhook_with_a_lone_surrogate_is_a_400(cloud: dict[str, str], where: str) -> None:
    fields = dict(HISTORY)
    if where == "key":
        body = json.dumps(fields)[:-1] + ', "x\\ud800": "1"}'
    else:
        body = json.dumps({**fields, where: "PLACEHOLDER"}).replace("PLACEHOLDER", "a\\ud800b")
    assert post_json(cloudpbx.handler, "/v1/demo/cloudpbx", body) == (400, {"error": "Invalid parameters"})
    assert calls.get_call("demo", "SURROGATE-1") is None
    # A proper pair (an emoji, escaped) is text like any other: stored.
    good = json.dumps({**fields, "user": "andy", "department": "\\ud83d\\ude00"}).replace("\\\\", "\\")
    assert post_json(cloudpbx.handler, "/v1/demo/cloudpbx", good)[0] == 200
    assert calls.get_call("demo", "SURROGATE-1") is not None
