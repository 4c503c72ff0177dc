"""The operator console (docs/console.md) through the local runtime over HTTP: its API (health,
users, settings, redeliver) and its page, driven in a real headless Chromium (Debian's, through
Playwright's Python client).

One runtime for the module: account `con` (Cloud PBX, a fake MiniCRM in realtime mode, recordings
from a local file server) with four calls - one answered with a recording, one missed, one outgoing
busy, and two answered while the fake MiniCRM failed every request, so that their deliveries are
parked `failed` (DeliveryMaxAttempts 1); and account `other`, whose key must see nothing of `con`.

The browser tests write a screenshot of each screen to SCREENSHOTS (README, "Operator console").
"""

from __future__ import annotations

import io
import math
import os
import re
import struct
import tempfile
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from callbridge.core.accounts import clear_account_cache
from callbridge.infra import aws, secrets
from callbridge.infra.settings import reset_settings
from callbridge_local.testing import LocalBridge, running_bridge
from tests.fakes.crm_server import Faults, serve
from tests.fakes.minicrm import FakeMiniCrm
from tests.integration.recording_server import RecordingServer, Reply
from tests.log_secrets import configured_secrets, leaked_lines
from tests.support import form, seed_history, trusting_fakes_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
# Where the browser tests leave a picture of each screen (README, "Operator console").
SCREENSHOTS = Path(os.environ.get("CALLBRIDGE_SCREENSHOTS") or ROOT / ".artifacts" / "console")
CHROMIUM = "/usr/bin/chromium"
# The flags a closed network and a root user need (docs/console.md, "Tests").
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "con-api-key-000000000001"
OTHER_KEY = "other-api-key-0000000001"
TOKEN = "con-crm-token-000000001"
MINI_KEY = "con-minicrm-key-0001"
ZONE = "Asia/Tokyo"  # the browser's time zone in these tests: far from UTC and from the account's

ACCOUNTS = {
    "con": """\
account: con
name: Console Test LLC
phone_region: RU
timezone: Europe/Moscow
pbx: {{kind: cloudpbx, crm_tokens: [{token}]}}
api_keys: [{key}]
users:
  - {{pbx_user: andy, name: Andrey Petrov, extension: "101", minicrm_extension: "001"}}
  - {{pbx_user: daria, name: Daria Ivanova, extension: "102"}}
crms:
  - {{kind: minicrm, base_url: "{mini}", api_key: {mini_key}, mode: realtime, default_user_extension: "900"}}
recordings:
  allow_hosts: ["127.0.0.1:{files}"]   # the test's file server (that port only): never on AWS
""",
    "other": """\
account: other
phone_region: RU
pbx: {{kind: cloudpbx, crm_tokens: [other-crm-token-00000001]}}
api_keys: [{key}]
""",
}
ANSWERED, MISSED, BUSY, PARKED, PARKED_API = "C-ANSWERED", "C-MISSED", "C-BUSY", "C-PARKED", "C-PARKED-API"


def wav(seconds: float = 4.0, rate: int = 8000) -> bytes:
    """A real, playable recording: a 440 Hz tone, 16-bit mono PCM."""
    out = io.BytesIO()
    with wave.open(out, "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        frames = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(int(seconds * rate)))
        file.writeframes(b"".join(struct.pack("<h", f) for f in frames))
    return out.getvalue()


AUDIO = wav()


@dataclass
class World:
    bridge: LocalBridge
    http: httpx.Client
    mini: FakeMiniCrm
    faults: Faults


@contextmanager
def core_at(bridge: LocalBridge) -> Iterator[None]:
    """The core's settings and clients pointed at the runtime's emulated AWS, then restored."""
    saved = dict(os.environ)
    os.environ.update(bridge.env)
    forget()
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        forget()


def forget() -> None:
    reset_settings()
    aws.reset_clients()
    secrets.reset_secret_cache()
    clear_account_cache()


def post_webhook(world: World, **fields: Any) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = world.http.post("/v1/con/cloudpbx", content=form(**fields), headers=headers)
    assert response.status_code == 200, response.text


def drain(world: World) -> None:
    response = world.http.post("/_local/queues/drain", params={"timeout": "30"}, timeout=40)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    accounts: Path = tmp_path_factory.mktemp("accounts")
    mini = FakeMiniCrm(MINI_KEY)
    faults = Faults(seed=27)
    with ExitStack() as stack:
        files = RecordingServer().start()
        stack.callback(files.stop)
        mini_url = stack.enter_context(serve(mini, faults))
        text = ACCOUNTS["con"].format(token=TOKEN, key=KEY, mini=mini_url, mini_key=MINI_KEY, files=files.port)
        (accounts / "con.yaml").write_text(trusting_fakes_yaml(text), encoding="utf-8")
        (accounts / "other.yaml").write_text(ACCOUNTS["other"].format(key=OTHER_KEY), encoding="utf-8")
        params = {"DeliveryMaxAttempts": "1", "DeliveryHttpAttempts": "1", "RecordingRetryBaseSeconds": "0"}
        bridge = stack.enter_context(running_bridge(accounts, params=params))
        http = stack.enter_context(httpx.Client(base_url=bridge.base_url, timeout=30))
        built = World(bridge, http, mini, faults)
        link = files.route("/rec/answered.wav", Reply(body=AUDIO, headers={"Content-Type": "audio/wav"}))
        post_webhook(built, **seed_history(callid=ANSWERED, link=link, crm_token=TOKEN, duration="42"))
        post_webhook(built, **seed_history(callid=MISSED, status="Missed", duration="0", link=None, crm_token=TOKEN))
        post_webhook(
            built,
            **seed_history(
                callid=BUSY, type="out", status="Busy", user="daria", duration="0", link=None, crm_token=TOKEN
            ),
        )
        drain(built)
        # Every MiniCRM request fails now: with one attempt allowed, these two deliveries are parked.
        faults.share = 1.0
        for call_id in (PARKED, PARKED_API):
            post_webhook(built, **seed_history(callid=call_id, link=None, crm_token=TOKEN, phone=NUMBERS[call_id]))
        drain(built)
        faults.share = 0.0
        with core_at(bridge):
            from callbridge.store import users

            # A PBX user the last sync listed and no mapping names (what `callbridge users sync` keeps).
            users.put_unmapped("con", "zoe", {"name": "zoe", "real_name": "Zoe Unmapped", "pbx_ext": "109"})
        yield built
    # The runtime has stopped: none of its lines (the console's requests included) shows a secret.
    leaked = leaked_lines(bridge.output(), configured_secrets(accounts))
    assert not leaked, "secrets in the runtime's log lines:\n" + "\n".join(leaked)


def api(world: World, method: str, path: str, key: str | None = KEY) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return world.http.request(method, path, headers=headers)


def delivery(world: World, call_id: str) -> dict[str, Any]:
    detail = api(world, "GET", f"/v1/con/calls/{call_id}")
    assert detail.status_code == 200, detail.text
    [found] = detail.json()["deliveries"]
    return dict(found)


# The parked calls' client numbers: each call is told apart in MiniCRM's requests by its number.
NUMBERS = {PARKED: "79161234567", PARKED_API: "79161234568"}


def received_for(world: World, call_id: str) -> int:
    """Records of one call the fake MiniCRM accepted so far, repeats included (it keeps each request)."""
    number = NUMBERS[call_id][1:]
    return sum(
        1
        for request in list(world.mini.requests)
        for record in request["Data"]
        if str(record["Number"]).endswith(number)
    )


def wait_for_state(world: World, call_id: str, states: set[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = delivery(world, call_id)
        if found["state"] in states or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


# -- the API ---------------------------------------------------------------------------------------
CONSOLE_ROUTES = [
    ("GET", "/v1/con/health"),
    ("GET", "/v1/con/users"),
    ("GET", "/v1/con/settings"),
    ("GET", f"/v1/con/calls/{PARKED_API}/redeliver/minicrm"),
    ("POST", f"/v1/con/calls/{PARKED_API}/redeliver/minicrm"),
]


@pytest.mark.parametrize("key", [None, "con-api-key-000000000002", OTHER_KEY])
def test_a_wrong_key_and_another_accounts_key_get_one_401(world, key):
    for method, path in CONSOLE_ROUTES:
        response = api(world, method, path, key)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json() == {"error": "Invalid credentials"}
    assert delivery(world, PARKED_API)["state"] == "failed"  # nothing was queued by them


def test_another_accounts_call_is_not_found_for_a_redelivery(world):
    for method in ("GET", "POST"):
        response = api(world, method, f"/v1/other/calls/{ANSWERED}/redeliver/minicrm", OTHER_KEY)
        assert response.status_code == 404, response.text
    assert api(world, "GET", "/v1/con/calls/NO-SUCH/redeliver/minicrm").status_code == 404
    assert api(world, "GET", f"/v1/con/calls/{ANSWERED}/redeliver/nosuchcrm").status_code == 404


def test_health_says_each_crms_last_success_and_error_and_what_is_parked(world):
    assert world.http.post("/_local/schedules/CloudPbxReconcileFunction").status_code == 200
    response = api(world, "GET", "/v1/con/health")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "private, no-store"
    health = response.json()
    assert health["pbx"]["kind"] == "cloudpbx" and health["pbx"]["last_webhook_at"].endswith("Z")
    [crm] = health["crms"]
    assert crm["name"] == "minicrm" and crm["last_success_at"] and crm["last_error_at"], crm
    assert crm["last_error"]
    assert crm["parked"] == {"rejected": 0, "failed": 2}  # both parked calls (redelivered by later tests)
    assert health["dead_lettered"] == {"deliveries": 0, "scope": "stack"}
    reconciliation = health["reconciliation"]
    assert reconciliation["job"] == "cloudpbx" and reconciliation["schedule"].startswith("rate(")
    assert reconciliation["last_run_at"] and reconciliation["next_at"] > reconciliation["last_run_at"]


def test_users_list_the_unmapped_first(world):
    body = api(world, "GET", "/v1/con/users").json()
    assert [u["pbx_user"] for u in body["users"]] == ["zoe", "andy", "daria"]
    assert body["unmapped"] == 1 and body["users"][0]["mapped"] is False
    assert body["users"][1]["crm_fields"] == {"minicrm_extension": "001"}


def test_settings_mask_every_secret(world):
    response = api(world, "GET", "/v1/con/settings")
    assert response.status_code == 200, response.text
    text = response.text
    for secret in (KEY, TOKEN, MINI_KEY):
        assert secret not in text
    body = response.json()
    assert body["settings"]["crms"][0]["api_key"] == "**********"
    assert body["settings"]["api_keys"] == "**********"
    assert set(body["secrets"].values()) == {"**********"} and "api_key" in body["secrets"]


def test_a_redelivery_is_sent_once_even_when_asked_twice_at_once(world):
    before = received_for(world, PARKED_API)
    plan = api(world, "GET", f"/v1/con/calls/{PARKED_API}/redeliver/minicrm").json()
    assert plan["action"] == "send" and plan["state"] == "failed" and "once" in plan["message"]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: api(world, "POST", f"/v1/con/calls/{PARKED_API}/redeliver/minicrm"), [0, 1]))
    results = {a.status_code: a.json()["result"] for a in answers}
    # One queued it; the other found it queued (or already taken by the worker, or even delivered).
    assert sorted(results) == [200, 202] and results[202] == "queued", results
    assert results[200] in {"requested", "in_progress", "delivered"}, results
    assert wait_for_state(world, PARKED_API, {"delivered"})["state"] == "delivered"
    drain(world)
    assert received_for(world, PARKED_API) == before + 1
    # Delivered: a third request sends nothing, and says why.
    again = api(world, "POST", f"/v1/con/calls/{PARKED_API}/redeliver/minicrm")
    assert again.status_code == 200 and again.json()["result"] == "delivered", again.text
    drain(world)
    assert received_for(world, PARKED_API) == before + 1


# -- the page --------------------------------------------------------------------------------------
def test_the_page_says_what_it_may_load(world):
    response = world.http.get("/console")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy.split("media-src")[0]
    for asset in ("app.js", "api.js", "dom.js", "screens.js", "style.css"):
        served = world.http.get(f"/console/{asset}")
        assert served.status_code == 200 and served.headers["content-security-policy"] == policy
    assert world.http.get("/console/index.html").status_code == 404
    assert world.http.get("/console/..%2Ftemplate.yaml").status_code == 404


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test does)")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        # A persistent context on a fresh, empty profile directory: the user data dir is ours.
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            timezone_id=ZONE,
            locale="en-GB",
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab with an empty session storage; fails the test on any CSP report or script error."""
    tab = browser.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    try:
        yield tab
        # A refused key's 401 and an unknown call's 404 are logged by the browser as failed loads.
        assert not [p for p in problems if not p.startswith("Failed to load resource")], problems
    finally:
        tab.close()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, world: World | LocalBridge, account: str = "con", key: str = KEY) -> None:
    bridge = world if isinstance(world, LocalBridge) else world.bridge
    page.goto(bridge.url("/console"))
    # The account field has the focus; the rest by keyboard alone.
    page.wait_for_selector("#account:focus")
    page.keyboard.type(account)
    page.keyboard.press("Tab")
    page.keyboard.type(key)
    page.keyboard.press("Enter")


def test_sign_in_filter_and_open_a_call(world, page):
    sign_in(page, world)
    page.wait_for_selector("table tbody tr")
    assert page.evaluate("document.activeElement.tagName") == "H1"  # the new screen's heading
    assert page.evaluate("sessionStorage.length") == 1 and KEY not in page.url
    assert page.locator("#results tbody tr").count() == 5
    assert f"Times in {ZONE}" in page.inner_text("main")
    # The busy call's start, shown in the browser's zone.
    busy = api(world, "GET", f"/v1/con/calls/{BUSY}").json()["call"]
    local = datetime.fromisoformat(busy["started_at"].replace("Z", "+00:00")).astimezone(ZoneInfo(ZONE))
    assert local.strftime("%H:%M:%S") in page.inner_text("#results")
    shot(page, "calls")

    page.select_option("select[name=outcome]", "missed")
    page.select_option("select[name=missed_reason]", "no_answer")
    page.click("text=Apply filters")
    expect(page.locator("#results tbody tr")).to_have_count(1)
    assert MISSED in page.inner_text("#results")
    page.select_option("select[name=outcome]", "")
    page.select_option("select[name=missed_reason]", "")
    page.select_option("select[name=direction]", "out")
    page.fill("input[name=user]", "daria")
    page.click("text=Apply filters")
    expect(page.locator("#results tbody tr")).to_have_count(1)
    assert BUSY in page.inner_text("#results")
    shot(page, "calls-filtered")

    page.click(f"text={BUSY}")
    page.wait_for_selector("h2#h-deliveries")
    assert page.url.endswith(f"#/call/{BUSY}")
    assert "Timeline" in page.inner_text("main") and "history" in page.inner_text("ol.timeline")
    assert page.inner_text("tr[data-crm=minicrm] .state") == "delivered"


def test_the_recording_plays_and_seeks(world, page):
    sign_in(page, world)
    page.wait_for_selector("table tbody tr")
    page.goto(world.bridge.url(f"/console#/call/{ANSWERED}"))
    page.wait_for_selector("audio#player")
    assert page.get_attribute("label[for=player]", "for") == "player"
    played = page.evaluate(
        """async () => {
          const audio = document.getElementById("player");
          audio.muted = true;
          await audio.play();
          await new Promise((resolve) => { const t = () => audio.currentTime > 0.3 ? resolve() : setTimeout(t, 50); t(); });
          audio.pause();
          audio.currentTime = 3.0;
          await new Promise((resolve) => audio.addEventListener("seeked", resolve, { once: true }));
          return { duration: audio.duration, at: audio.currentTime, seekableEnd: audio.seekable.length ? audio.seekable.end(0) : 0 };
        }"""
    )
    assert abs(played["duration"] - 4.0) < 0.1 and abs(played["at"] - 3.0) < 0.1, played
    assert played["seekableEnd"] > 3.5, played  # the server answers Range requests (206)
    shot(page, "call")
    # The same link answers a Range request with the bytes asked for.
    url = page.get_attribute("audio#player", "src")
    ranged = httpx.get(url, headers={"Range": "bytes=100-199"}, follow_redirects=True, timeout=30)
    assert ranged.status_code == 206 and ranged.content == AUDIO[100:200]


def test_redeliver_sends_once_even_on_a_double_click(world, page):
    before = received_for(world, PARKED)
    sign_in(page, world)
    page.wait_for_selector("table tbody tr")
    page.goto(world.bridge.url(f"/console#/call/{PARKED}"))
    page.wait_for_selector("tr[data-crm=minicrm]")
    assert page.inner_text("tr[data-crm=minicrm] .state") == "failed"
    page.click("tr[data-crm=minicrm] button")
    page.wait_for_selector("#plan-minicrm")
    # The page says what will happen before it happens.
    assert "Parked failed" in page.inner_text("#plan-minicrm") and "once" in page.inner_text("#plan-minicrm")
    assert page.evaluate("document.activeElement.textContent") == "Send to minicrm now"
    shot(page, "redeliver")
    page.dblclick("text=Send to minicrm now")
    # The page follows the delivery until the worker has sent it (the string waits of Playwright are
    # script evaluation, which the page's CSP refuses: locators instead).
    expect(page.locator("tr[data-crm=minicrm] .state")).to_have_text("delivered", timeout=30_000)
    drain(world)
    assert received_for(world, PARKED) == before + 1
    # Delivered now: asking again says so and offers nothing to send.
    page.click("tr[data-crm=minicrm] button")
    page.wait_for_selector("text=nothing is sent again")
    assert page.locator("text=Send to minicrm now").count() == 0


def test_health_users_and_settings_screens(world, page):
    sign_in(page, world)
    page.wait_for_selector("table tbody tr")
    page.click("nav >> text=Health")
    page.wait_for_selector("text=Dead-lettered deliveries")
    text = page.inner_text("main")
    assert "minicrm" in text and "Last webhook" in text and "rate(" in text
    shot(page, "health")
    page.click("nav >> text=Users")
    page.wait_for_selector("table tbody tr")
    rows = page.locator("tbody tr")
    assert rows.nth(0).inner_text().startswith("zoe") and "unmapped" in rows.nth(0).inner_text()
    shot(page, "users")
    page.click("nav >> text=Settings")
    page.wait_for_selector("text=Secrets set")
    text = page.inner_text("main")
    assert "**********" in text and MINI_KEY not in page.content() and KEY not in page.content()
    shot(page, "settings")
    # Readable on a phone: nothing wider than the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(world.bridge.url(f"/console#/call/{ANSWERED}"))
    page.wait_for_selector("audio#player")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, "call-phone")


@pytest.mark.parametrize(("account", "key"), [("con", "con-api-key-000000000002"), ("con", OTHER_KEY), ("nosuch", KEY)])
def test_a_wrong_key_or_another_accounts_key_sees_nothing(world, page, account, key):
    sign_in(page, world, account, key)
    page.wait_for_selector("text=Wrong account or API key")
    assert page.locator("table").count() == 0 and page.is_hidden("#nav")
    assert page.evaluate("sessionStorage.length") == 0
    shot(page, "sign-in-refused")


def test_another_accounts_key_sees_only_its_own_account(world, page):
    sign_in(page, world, "other", OTHER_KEY)
    page.wait_for_selector("text=No calls match.")
    page.goto(world.bridge.url(f"/console#/call/{ANSWERED}"))
    page.wait_for_selector("text=Call not found")
    assert "con" not in page.inner_text("#who").replace("Account other", "")


def test_the_demo_account_of_make_run_signs_in_right_after_start(bridge, page):
    """`bridge` is the runtime as `make run` starts it (accounts/, tests/e2e/conftest.py): the key
    the README gives opens the console at once."""
    sign_in(page, bridge, "demo", "demo-api-key-0001")
    # The demo account's calls (other tests of this runtime may have made some), or none yet.
    expect(page.locator("#results")).to_contain_text(re.compile("Page 1|No calls match"))
    page.click("nav >> text=Health")
    expect(page.locator("main")).to_contain_text("cloudpbx")
    page.click("nav >> text=Users")
    expect(page.locator("tbody tr")).to_have_count(2)  # andy and daria, mapped
