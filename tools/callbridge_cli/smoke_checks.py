"""The smoke check of a running CallBridge (a deployed stack or `make run`), over its public HTTP API
only: it plays the Cloud PBX for one call (docs/protocols/cloudpbx.md: `contact`, the `event`s
INCOMING, ACCEPTED and COMPLETED, `history`), checks every answer against the protocol, then reads
the call back through the calls API (docs/openapi.yaml, `GET /v1/{account}/calls/{callid}`) until it
is stored with the fields it was sent, within a deadline.

A smoke call is a real call to CallBridge and would be a real call in the account's CRMs. Unless
asked to deliver it, it comes from a withheld caller id (`anonymous`) and an unmapped PBX user: no
CRM gets a call card for it, and every CRM settles its delivery `not_applicable` (docs/delivery.md),
so nothing reaches a CRM. Its call id starts with `callbridge-smoke-` and its `groupRealName` says
"CallBridge smoke test", so it is recognisable in `callbridge calls list` and, when delivered, in
the CRM (the call id is the CRM's external id).

No secret is ever part of a check's line: the crm_token travels in the request bodies and the API
key in a header, and only statuses, answers to the checks and the call's fields are reported."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

SMOKE_PREFIX = "callbridge-smoke-"
SMOKE_USER = "callbridge-smoke"
SMOKE_DEPARTMENT = "CallBridge smoke test"
WITHHELD = "anonymous"  # a withheld caller id as PBXs send it (docs/cloudpbx.md, "What is stored")
WRONG_TOKEN = "callbridge-smoke-wrong-token"  # a key no account has, to see a refusal
DURATION = 7  # seconds of talk the smoke history reports
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
EVENTS = ("INCOMING", "ACCEPTED", "COMPLETED")
REQUEST_TIMEOUT_S = 15.0  # a cold start of a function on AWS takes a few seconds, not more


@dataclass(frozen=True)
class Plan:
    """What one smoke run sends and expects."""

    base_url: str
    account: str
    crm_token: str = field(repr=False)
    api_key: str = field(repr=False)
    deliver: bool = False  # send a real number, so that the account's CRMs get the call
    phone: str = WITHHELD  # the client's number as the PBX sends it
    user: str = SMOKE_USER
    timeout_s: float = 60.0  # for the stored call (and, with deliver, its deliveries)
    call_id: str = ""
    started: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    @staticmethod
    def new_call_id(now: datetime) -> str:
        """Unique per run, so that runs against production never meet a real call or each other."""
        return f"{SMOKE_PREFIX}{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


class Failed(Exception):
    """A check failed: the run stops (what follows depends on it)."""

    def __init__(self, check: Check) -> None:
        super().__init__(check.detail)
        self.check = check


Report = Callable[[Check], None]


def _answer(response: httpx.Response) -> str:
    """The status and body of an answer, short enough for one line."""
    body = response.text.strip()
    if len(body) > 200:
        body = body[:199] + "…"
    return f"{response.status_code} {body}".rstrip()


@contextmanager
def _timed() -> Iterator[Callable[[], str]]:
    started = time.monotonic()
    yield lambda: f"({(time.monotonic() - started) * 1000:.0f} ms)"


class Smoke:
    def __init__(self, plan: Plan, http: httpx.Client, report: Report) -> None:
        self.plan = plan
        self.http = http
        self.report = report
        self.pbx_url = f"/v1/{plan.account}/cloudpbx"

    def ok(self, name: str, detail: str) -> None:
        self.report(Check(name, True, detail))

    def fail(self, name: str, detail: str) -> Failed:
        return Failed(Check(name, False, detail))

    def request(self, name: str, method: str, url: str, **options: Any) -> httpx.Response:
        try:
            return self.http.request(method, url, **options)
        except httpx.HTTPError as exc:
            # The exception names the URL at most: no body, no header, so no secret.
            raise self.fail(name, f"no answer from {self.plan.base_url}: {type(exc).__name__}: {exc}") from None

    def post_pbx(self, name: str, fields: dict[str, str], token: str | None = None) -> tuple[httpx.Response, str]:
        body = {**fields, "crm_token": token or self.plan.crm_token}
        with _timed() as took:
            response = self.request(name, "POST", self.pbx_url, data=body, headers=FORM)
            return response, took()

    # -- the checks, in order -------------------------------------------------------------------

    def health(self) -> None:
        with _timed() as took:
            response = self.request("health", "GET", "/health")
            elapsed = took()
        if response.status_code != 200 or _json(response) != {"status": "ok"}:
            raise self.fail("health", f'GET /health answered {_answer(response)}, expected 200 {{"status": "ok"}}')
        self.ok("health", f"GET /health: {_answer(response)} {elapsed}")

    def refuses_a_wrong_key(self) -> None:
        fields = {"cmd": "contact", "phone": self.plan.phone, "callid": self.plan.call_id}
        response, elapsed = self.post_pbx("auth", fields, token=WRONG_TOKEN)
        if response.status_code != 401 or _json(response) != {"error": "Invalid token"}:
            raise self.fail(
                "auth", f'a wrong crm_token was answered {_answer(response)}, expected 401 {{"error": "Invalid token"}}'
            )
        self.ok("auth", f"a wrong crm_token is refused: {_answer(response)} {elapsed}")

    def contact(self) -> None:
        fields = {"cmd": "contact", "phone": self.plan.phone, "callid": self.plan.call_id}
        response, elapsed = self.post_pbx("contact", fields)
        answer = _json(response)
        if response.status_code == 401:
            raise self.fail("contact", f"{_answer(response)}: the account or its crm_token is wrong")
        if response.status_code != 200 or not isinstance(answer, dict):
            raise self.fail("contact", f"answered {_answer(response)}, expected 200 and a JSON object")
        wrong = [k for k in ("contact_name", "responsible") if k in answer and not isinstance(answer[k], str)]
        if wrong:
            raise self.fail("contact", f"answered {_answer(response)}: {', '.join(wrong)} must be strings")
        if not self.plan.deliver and answer != {}:
            raise self.fail("contact", f"answered {_answer(response)}, expected {{}} for a withheld caller id")
        # The keys only: a name from the directory is the account's data, not the check's.
        shown = "{" + ", ".join(sorted(answer)) + "}" if answer else "{}"
        self.ok("contact", f"200 {shown} {elapsed}")

    def event(self, kind: str) -> None:
        name = f"event {kind}"
        fields = {"cmd": "event", "type": kind, "phone": self.plan.phone, "user": self.plan.user}
        response, elapsed = self.post_pbx(name, {**fields, "callid": self.plan.call_id})
        if response.status_code != 200:
            raise self.fail(name, f"answered {_answer(response)}, expected 200")
        self.ok(name, f"{_answer(response)} {elapsed}")

    def history(self) -> None:
        fields = {
            "cmd": "history",
            "type": "in",
            "status": "Success",
            "phone": self.plan.phone,
            "user": self.plan.user,
            "duration": str(DURATION),
            "start": self.plan.started.strftime("%Y%m%dT%H%M%SZ"),
            "groupRealName": SMOKE_DEPARTMENT,
            "callid": self.plan.call_id,
        }
        response, elapsed = self.post_pbx("history", fields)
        if response.status_code != 200:
            raise self.fail("history", f"answered {_answer(response)}, expected 200")
        self.ok("history", f"{_answer(response)} {elapsed}")

    def read_call(self) -> tuple[int, Any]:
        response = self.request(
            "stored call",
            "GET",
            f"/v1/{self.plan.account}/calls/{self.plan.call_id}",
            headers={"Authorization": f"Bearer {self.plan.api_key}"},
        )
        if response.status_code == 401:
            raise self.fail(
                "stored call", f"the calls API answered {_answer(response)}: the account's API key is wrong"
            )
        if response.status_code not in (200, 404, 503):
            raise self.fail("stored call", f"the calls API answered {_answer(response)}")
        return response.status_code, _json(response)

    def stored_call(self, deadline: float) -> dict[str, Any]:
        problems = ["not stored yet"]
        while True:
            status, detail = self.read_call()
            if status == 200 and isinstance(detail, dict):
                problems = call_problems(detail, self.plan)
                if not problems:
                    call = detail["call"]
                    self.ok(
                        "stored call",
                        f"{call['call_id']}: {call['direction']} {call['outcome']}, user {call['user']}, "
                        f"{call['duration']} s, started {call['started_at']}, timeline "
                        + ", ".join(_timeline_names(detail)),
                    )
                    return detail
            elif status == 503:
                problems = ["the calls API answered 503 (our store is unavailable)"]
            if time.monotonic() >= deadline:
                raise self.fail("stored call", f"not as sent after {self.plan.timeout_s:g} s: " + "; ".join(problems))
            time.sleep(0.5)

    def deliveries(self, detail: dict[str, Any], deadline: float) -> None:
        while True:
            states = {str(d.get("crm")): str(d.get("state")) for d in detail.get("deliveries") or []}
            shown = ", ".join(f"{crm} {state}" for crm, state in sorted(states.items())) or "the account has no CRM"
            if not self.plan.deliver:
                reached = [crm for crm, state in states.items() if state not in ("pending", "not_applicable")]
                if reached:
                    raise self.fail("deliveries", f"the smoke call must reach no CRM, but: {shown}")
                self.ok("deliveries", f"{shown} (a withheld caller id is sent to no CRM)")
                return
            bad = [crm for crm, state in states.items() if state in ("rejected", "failed", "not_applicable")]
            if bad:
                raise self.fail("deliveries", f"{shown} (`callbridge calls show {self.plan.call_id}` says why)")
            if all(state == "delivered" for state in states.values()):
                self.ok("deliveries", shown)
                return
            if time.monotonic() >= deadline:
                raise self.fail(
                    "deliveries",
                    f"{shown} after {self.plan.timeout_s:g} s (a `mode: batch` CRM is sent to on the "
                    "DeliverySchedule: give --timeout more than its period)",
                )
            time.sleep(1.0)
            _, read = self.read_call()
            detail = read if isinstance(read, dict) else detail

    def run(self) -> None:
        self.health()
        self.refuses_a_wrong_key()
        self.contact()
        for kind in EVENTS:
            self.event(kind)
        self.history()
        deadline = time.monotonic() + self.plan.timeout_s
        detail = self.stored_call(deadline)
        self.deliveries(detail, deadline)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def _timeline_names(detail: dict[str, Any]) -> list[str]:
    return sorted(f"{e.get('cmd')} {e.get('type')}" for e in detail.get("timeline") or [])


def call_problems(detail: dict[str, Any], plan: Plan) -> list[str]:
    """How the stored call differs from what the smoke run sent; empty when it is as sent."""
    call = detail.get("call")
    if not isinstance(call, dict):
        return ["the answer has no call"]
    expected: dict[str, Any] = {
        "call_id": plan.call_id,
        "account": plan.account,
        "source": "cloudpbx",
        "direction": "in",
        "outcome": "answered",
        "final": True,
        "user": plan.user,
        "duration": DURATION,
        "started_at": plan.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "phone_raw": plan.phone,
    }
    problems = [
        f"{name} is {call.get(name)!r}, expected {value!r}"
        for name, value in expected.items()
        if call.get(name) != value
    ]
    if plan.user not in (call.get("users_rang") or []):
        problems.append(f"users_rang {call.get('users_rang')!r} lacks {plan.user!r}")
    flags = call.get("flags") or []
    if plan.deliver:
        if not str(call.get("phone", "")).startswith("+") or "no_number" in flags:
            problems.append(f"phone {call.get('phone')!r} is not E.164 (flags {flags!r})")
    elif "no_number" not in flags:
        problems.append(f"a withheld caller id is not flagged no_number (flags {flags!r})")
    wanted = {f"event {kind}" for kind in EVENTS} | {"history in"}
    missing = wanted - set(_timeline_names(detail))
    if missing:
        problems.append("the timeline lacks " + ", ".join(sorted(missing)))
    return problems


def run(plan: Plan, report: Report) -> Check | None:
    """Run every check, reporting each; the failed check, or None when all passed."""
    with httpx.Client(base_url=plan.base_url, timeout=REQUEST_TIMEOUT_S, follow_redirects=False) as http:
        try:
            Smoke(plan, http, report).run()
        except Failed as failed:
            report(failed.check)
            return failed.check
    return None
