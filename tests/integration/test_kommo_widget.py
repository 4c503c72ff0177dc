"""The amoCRM click-to-call widget (widgets/kommo/) against our route: its script runs in Node with
the amoCRM it expects played by a few stubs (`define`, `APP`, `add_action`, `fetch`), a click on a
card's phone number is made, and the request it sends is replayed, as it is, to the handler of
`POST /v1/{account}/calls` (functions/make_call.py): the PBX (a fake Cloud PBX on 127.0.0.1) is asked
to ring the clicking manager and dial the number. The manifest names every setting the script reads."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import make_call
from callbridge.core import accounts
from callbridge.core.config import AccountConfig
from callbridge.features.admin import apply_account
from callbridge.infra import secrets
from tests.contract.conftest import account_id, stack_env  # noqa: F401  (fixtures, by import)
from tests.fakes.cloudpbx_api import PATH, FakeCloudPbx
from tests.fakes.crm_server import serve
from tests.support import http_event, trusting_fakes

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("node") is None, reason="the widget's script runs in Node"),
]
WIDGET = Path(__file__).resolve().parents[2] / "widgets" / "kommo"
API_KEY = "widget-api-key-000000000001"
PBX_TOKEN = "widget-pbx-api-token-0001"

# amoCRM as the widget sees it: AMD's define, the current user, notifications, the widget's own
# methods; `fetch` records the request and answers what the route answered.
HARNESS = """
const fs = require('fs');
let Widget = null;
global.define = (deps, factory) => { Widget = factory({}); };
eval(fs.readFileSync(process.argv[1], 'utf8'));
const sent = [];
const shown = [];
global.APP = {constant: (name) => (name === 'user' ? {id: 7} : null),
              notifications: {show_message: (m) => shown.push(m.text)}};
global.fetch = (url, init) => { sent.push({url, ...init});
  return Promise.resolve({ok: true, status: 200, json: () => Promise.resolve({status: 'calling'})}); };
const widget = new Widget();
const actions = {};
widget.add_action = (kind, callback) => { actions[kind] = callback; };
widget.get_settings = () => JSON.parse(process.argv[2]);
widget.i18n = (key) => JSON.parse(fs.readFileSync(process.argv[3], 'utf8'))[key];
widget.callbacks.init();
widget.callbacks.bind_actions();
actions.phone({value: '+7 (916) 555-00-01'});
setTimeout(() => console.log(JSON.stringify({sent, shown})), 50);
"""


def click(settings: dict[str, Any]) -> dict[str, Any]:
    """What the widget sends (and shows) when user 7 clicks +7 (916) 555-00-01."""
    done = subprocess.run(
        ["node", "-e", HARNESS, str(WIDGET / "script.js"), json.dumps(settings), str(WIDGET / "i18n" / "en.json")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture
def pbx() -> Iterator[tuple[FakeCloudPbx, str]]:
    fake = FakeCloudPbx(token=PBX_TOKEN)
    with serve(fake) as url:  # stopped on exit, whatever the test did
        yield fake, url
    assert fake.errors == []


def test_the_manifest_declares_what_the_script_reads() -> None:
    manifest = json.loads((WIDGET / "manifest.json").read_text())
    assert set(manifest["settings"]) == {"bridge_url", "account", "api_key", "extensions"}
    assert manifest["settings"]["extensions"]["type"] == "users"  # one value per amoCRM user
    assert manifest["settings"]["api_key"]["type"] == "pass"
    for locale in manifest["widget"]["locale"]:
        texts = json.loads((WIDGET / "i18n" / f"{locale}.json").read_text())
        assert set(texts["settings"]) == set(manifest["settings"]) and set(texts["messages"]) >= {"calling"}
    for name in ("logo_main", "logo_small", "logo", "logo_medium", "logo_min"):
        assert (WIDGET / "images" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_click_in_amocrm_makes_the_pbx_ring_the_manager(pbx: tuple[FakeCloudPbx, str], account_id: str) -> None:  # noqa: F811
    fake, url = pbx
    config = {
        "account": account_id,
        "timezone": "Europe/Moscow",
        "phone_region": "RU",
        "api_keys": [API_KEY],
        "pbx": {
            "kind": "cloudpbx",
            "crm_tokens": ["widget-crm-token-00001"],
            "api_url": f"{url}{PATH}",
            "token": PBX_TOKEN,
        },
        "crms": [{"kind": "kommo", "base_url": "https://example.amocrm.ru", "token": "widget-kommo-token-01"}],
        "users": [{"pbx_user": "andy", "extension": "101", "kommo_user_id": 7}],
    }
    apply_account(AccountConfig.model_validate(trusting_fakes(config)))
    accounts.clear_account_cache()
    secrets.reset_secret_cache()
    settings = {"bridge_url": "https://bridge.example.com/", "account": account_id, "api_key": API_KEY,
                "extensions": json.dumps({"7": "101", "9": "103"})}  # fmt: skip
    clicked = click(settings)
    [request] = clicked["sent"]
    target = urlsplit(request["url"])
    assert (target.scheme, target.netloc, target.path) == ("https", "bridge.example.com", f"/v1/{account_id}/calls")
    assert request["credentials"] == "omit"  # amoCRM's cookies never go to us
    event = http_event(
        target.path, request["body"], content_type=request["headers"]["Content-Type"], account=account_id
    )
    event["headers"]["authorization"] = request["headers"]["Authorization"]
    answer = make_call.handler(event, None)
    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"])["status"] == "calling"
    [asked] = fake.requests
    assert (asked["cmd"], asked["user"], asked["phone"]) == ("makeCall", "andy", "79165550001")
    assert clicked["shown"] == ["Your phone rings: pick it up, the client is dialled next"]


def test_a_user_without_an_extension_is_told_and_nothing_is_sent() -> None:
    settings = {"bridge_url": "https://bridge.example.com", "account": "demo", "api_key": API_KEY,
                "extensions": {"9": "103"}}  # fmt: skip
    clicked = click(settings)
    assert clicked["sent"] == [] and "not set up" in clicked["shown"][0]
