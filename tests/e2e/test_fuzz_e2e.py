"""A fuzz run over every route of docs/openapi.yaml against the local runtime (a subprocess, over HTTP
on 127.0.0.1), with a fixed seed: valid requests mixed with malformed, oversized, wrongly typed,
invalid UTF-8, wrong content type, unknown account and wrong key ones, and phases in which every
DynamoDB write fails (the runtime's /_local/faults, tools/callbridge_local/faults.py).

What must hold:
- no answer is a 5xx, except the 503 a request gets while the store is failing;
- a history or event (Cloud PBX) or incoming / finished (telediscount) answered 2xx is stored: its
  record is in the calls table afterwards, oversized ones and retried ones included;
- one that hit a store fault is answered 503, never 2xx (the PBX retries it) - and stored once the
  store is back and the PBX retried;
- then the delivery side, with both CRMs (retailCRM and MiniCRM, batch mode) answering a share of
  their requests with a redirect, an HTML page, truncated JSON, 429 or a 5xx (tests/fakes/crm_server.py
  `Faults`, by seed): every stored final call is delivered, parked with a reason, or deliberately
  not applicable to each CRM - none pending or leased - extreme dates, numbers and texts included;
  nothing reached a CRM twice; every call still ringing is watched by the ringing sweep.

Every route of the OpenAPI document is fuzzed: the ones below have generators that know their
protocol; a route added later is fuzzed from its OpenAPI parameters (`generic`), so it is covered
without an edit here, and the run fails naming any route that got too few requests. Outbound
traffic stays on loopback: the accounts' PBX and CRM are fakes on 127.0.0.1 they trust, and every
recording link is one of those or an IP literal the address guard refuses without I/O.
"""

from __future__ import annotations

import base64
import functools
import json
import random
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
import pytest
import yaml

from callbridge.pbx.telediscount.protocol import is_sip
from callbridge.store.keys import CALL_SK, DELIVERY_PREFIX, EVENT_PREFIX, OPEN_PREFIX, call_pk
from callbridge_local.testing import LocalBridge, running_bridge
from tests.fakes import base as td_server
from tests.fakes import crm_server
from tests.fakes.cloudpbx_api import PATH as PBX_PATH
from tests.fakes.cloudpbx_api import FakeCloudPbx
from tests.fakes.minicrm import FakeMiniCrm
from tests.fakes.retailcrm import FakeRetailCrm
from tests.fakes.telediscount import FakeTelediscount
from tests.support import trusting_fakes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261127
REQUESTS = 10_000
CHUNK = 250  # requests sent together (8 at a time); a fault phase is one smaller chunk
FAULT_EVERY = 4  # every 4th chunk is followed by a fault phase
FAULT_CHUNK = 24
WORKERS = 8
MIN_PER_ROUTE = 100
FAULTS = ("ResourceNotFoundException", "ProvisionedThroughputExceededException", "InternalServerError")
# The delivery phase: the share of CRM requests answered with a fault, the drain runs it may take
# (one try of a request per run, DeliveryMaxAttempts runs before a delivery is parked failed).
CRM_FAULT_SHARE = 0.3
DELIVERY_ATTEMPTS = 4
DRAIN_RUNS = 12
DELIVERY_CHUNK = 4
QUEUE_DRAINS = 30  # of 2 s at most each
TERMINAL = {"delivered", "not_applicable", "rejected", "failed"}
# A history's start: junk, and the extreme dates a CRM's record cannot hold.
HISTORY_STARTS = ["20261127T101010Z", "", "junk", "99999999T999999Z", "99991231T235959Z", "00010101T000000Z"]
HISTORY_STARTS += ["19700101T000000Z", "20261127T101010+1400"]

PBX_TOKEN = "fuzz-pbx-token-000001"
CRM_TOKEN = "fuzz-crm-token-000001"
API_KEY = "fuzz-api-key-0000000001"
CLIENT_ID = "fuzz-client-id-000001"
CRM_KEY = "fuzz-retailcrm-key-0001"
MINI_KEY = "fuzz-minicrm-key-00001"
TD_KEY = "fuzz-abonent-key-00001"
TD_SECRET = "fuzz-webhook-secret-001"
REC_USER, REC_PASSWORD = "fuzz-minicrm", "fuzz-recordings-pass-01"
FORM = "application/x-www-form-urlencoded"
FAULT_WEBHOOK = "well-formed, during a store fault"


# -- the routes ---------------------------------------------------------------------------------
@functools.cache
def openapi_document() -> dict[str, Any]:
    """docs/openapi.yaml, parsed once: a request for a route without a generator of its own is
    built from its operation, and parsing the document for each was seconds of every thousand."""
    spec: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
    return spec


def openapi_routes() -> list[tuple[str, str]]:
    spec = openapi_document()
    return sorted(
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    )


def openapi_operation(method: str, path: str) -> dict[str, Any]:
    """A route's operation with its references resolved (a new dict: the document is shared)."""
    spec = openapi_document()
    operation: dict[str, Any] = _resolve(spec, spec["paths"][path][method.lower()])
    return operation


def _resolve(spec: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict):
        if "$ref" in value:
            target: Any = spec
            for part in value["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _resolve(spec, target)
        return {k: _resolve(spec, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(spec, v) for v in value]
    return value


# -- requests -----------------------------------------------------------------------------------
@dataclass
class Request:
    route: tuple[str, str]
    method: str
    target: str  # path and query, percent-encoded as sent
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    kind: str = "valid"
    # (account, call id) of a history/event that must be stored when answered 2xx
    stores: tuple[str, str] | None = None
    fresh: bool = False  # the call id was never sent before (a fault must then answer non-2xx)
    fault: str | None = None
    status: int = 0
    answer: str = ""
    seconds: float = 0.0


class Fuzzer:
    """Builds requests; one random generator, so one seed gives one run."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.serial = 0
        self.stored_ids: list[tuple[str, str, str]] = []  # (route path, account, call id) sent valid

    # ---- building blocks
    def pick(self, weighted: dict[str, float]) -> str:
        return self.rng.choices(list(weighted), weights=list(weighted.values()))[0]

    def junk(self, size: int | None = None) -> str:
        size = self.rng.choice([0, 1, 5, 40, 300]) if size is None else size
        alphabet = string.ascii_letters + string.digits + " +-_.%&=?#/\\\"'<>{}[]:;,@!~`$^*()|\t" + "ёжЖ😀\u202e\u0000"
        return "".join(self.rng.choice(alphabet) for _ in range(size))

    def account(self, good: str) -> tuple[str, str]:
        """(segment as sent, kind)."""
        kind = self.pick({"valid": 80, "unknown": 8, "malformed": 6, "utf8": 3, "long": 3})
        if kind == "valid":
            return good, "valid"
        if kind == "unknown":
            return f"nobody{self.rng.randrange(10**6)}", "unknown account"
        if kind == "malformed":
            return quote(self.rng.choice(["A", "..", "a b", "a/b", "-x", "_", "a\u0000", "ё"]), safe=""), "bad account"
        if kind == "utf8":
            return "%FF%FEa", "invalid utf-8 account"
        return "a" * self.rng.choice([64, 300, 5000]), "long account"

    def call_id(self) -> tuple[str, bool]:
        """A call id and whether it is fresh; sometimes a repeat (a PBX retry)."""
        if self.stored_ids and self.rng.random() < 0.15:
            return self.rng.choice(self.stored_ids)[2], False
        self.serial += 1
        return f"FZ{self.serial:06d}-{self.rng.randrange(16**6):06x}", True

    def link(self, pbx: str) -> str | None:
        # Loopback fakes the account trusts, or addresses the guard refuses without any I/O.
        return self.rng.choice(
            [
                *[None] * 6,
                f"{pbx}/rec/{self.rng.randrange(99)}.mp3",
                "https://203.0.113.9/rec.mp3",
                "file:///etc/passwd",
            ]
        )

    def form_body(self, fields: dict[str, str], kind: str) -> tuple[bytes, dict[str, str], str]:
        """Encode `fields` (mutated per `kind`) as the Cloud PBX posts them."""
        content_type = FORM
        body = urlencode(fields).encode()
        if kind == "wrong content type":
            content_type = self.rng.choice(["application/json", "text/plain", "", "multipart/form-data; boundary=x"])
        elif kind == "invalid utf-8":
            body += b"&user=%FF%FE" if self.rng.random() < 0.5 else b"&user=\xff\xfe\xc3"
        elif kind == "oversized":
            size = self.rng.choice([20_000, 120_000, 420_000])
            body += f"&{self.rng.choice(['user', 'comment', 'diversion', 'raw'])}=".encode() + b"x" * size
        elif kind == "repeated fields":
            body += b"&" + body
        elif kind == "truncated":
            body = body[: self.rng.randrange(max(1, len(body)))]
        elif kind == "junk body":
            body = self.rng.choice([b"", b"\x00" * 50, json.dumps(fields).encode(), self.junk(200).encode()])
        headers = {"content-type": content_type} if content_type else {}
        return body, headers, content_type


class Routes:
    """Generators per route; each returns one Request."""

    def __init__(self, fuzz: Fuzzer, pbx_url: str) -> None:
        self.f = fuzz
        self.pbx_url = pbx_url
        self.known: dict[tuple[str, str], Callable[[tuple[str, str]], Request]] = {
            ("GET", "/health"): self.health,
            ("POST", "/v1/{account}/cloudpbx"): self.cloudpbx,
            ("POST", "/v1/{account}/cloudpbx/history"): self.cloudpbx,
            ("POST", "/v1/{account}/cloudpbx/event"): self.cloudpbx,
            ("POST", "/v1/{account}/cloudpbx/contact"): self.cloudpbx,
            ("GET", "/v1/{account}/recordings"): self.recordings,
            ("GET", "/v1/{account}/recordings/{id}"): self.signed_recording,
            ("GET", "/v1/{account}/retailcrm/make-call"): self.make_call,
            ("POST", "/v1/{account}/calls"): self.api_call,
            ("GET", "/v1/{account}/retailcrm/user-status"): self.user_status,
            ("GET", "/v1/{account}/telediscount/{secret}/incoming"): self.telediscount,
            ("GET", "/v1/{account}/telediscount/{secret}/finished"): self.telediscount,
        }

    def build(self, route: tuple[str, str], *, fault: str | None = None) -> Request:
        make = self.known.get(route, self.generic)
        request = make(route)
        request.fault = fault
        return request

    # ---- the Cloud PBX webhooks
    def health(self, route: tuple[str, str]) -> Request:
        kind = self.f.pick({"valid": 80, "query": 10, "body": 10})
        target = "/health" + (f"?{quote(self.f.junk(), safe='=&')}" if kind == "query" else "")
        body = self.f.junk(100).encode() if kind == "body" else None
        return Request(route, "GET", target, body=body, kind=kind)

    def cloudpbx(self, route: tuple[str, str], *, cmd: str | None = None) -> Request:
        f = self.f
        suffix = route[1].rsplit("/", 1)[1]
        account, account_kind = f.account("fz")
        if cmd is None:
            if suffix in ("history", "event", "contact"):
                cmd = suffix if f.rng.random() < 0.9 else f.rng.choice(["history", "event", "contact", "rating", "x"])
            else:
                cmd = f.pick({"history": 35, "event": 35, "contact": 20, "rating": 5, "": 3, "bogus": 2})
        call_id, fresh = f.call_id()
        fields: dict[str, str] = {"cmd": cmd, "crm_token": CRM_TOKEN, "callid": call_id}
        if cmd == "history":
            fields.update(
                type=f.rng.choice(["in", "out", "missed", "IN", ""]),
                status=f.rng.choice(["Success", "missed", "Busy", "NotAvailable", "Cancel", "??"]),
                phone=f.rng.choice(
                    ["79101234567", "+7 910 123-45-67", "", "0", "1" * 40, f.junk(8), "+" + "9" * 20, "7910😀1234567"]
                ),
                user=f.rng.choice(["andy", "daria", "", "nobody", f.junk(12)]),
                # Extreme dates too: each must end delivered, parked or refused, never crash a batch.
                start=f.rng.choice(HISTORY_STARTS),
                duration=f.rng.choice(["124", "0", "", "-5", "1e9", "99999999999999999999", "abc"]),
            )
            link = f.link(self.pbx_url)
            if link:
                fields["link"] = link
            if f.rng.random() < 0.3:
                fields["diversion"] = f.rng.choice(["74951234567", f.junk(30), "\u202e" + "ж" * 200])
        elif cmd == "event":
            fields.update(
                type=f.rng.choice(["INCOMING", "ACCEPTED", "COMPLETED", "OUTGOING", "CANCELLED", "", "weird"]),
                phone=f.rng.choice(["79101234567", "", f.junk(10)]),
                user=f.rng.choice(["andy", "daria", "", f.junk(5)]),
                diversion=f.rng.choice(["", "74951234567"]),
            )
        elif cmd == "contact":
            fields.update(phone=f.rng.choice(["79101234567", "84951234567", "", f.junk(20)]))
        elif cmd == "rating":
            fields.update(rating=f.rng.choice(["5", "0", "", "x"]), phone="79101234567")
        kind = f.pick(
            {
                "valid": 22,
                "wrong token": 12,
                "no token": 3,
                "wrong content type": 6,
                "invalid utf-8": 5,
                "oversized": 3,
                "repeated fields": 4,
                "truncated": 4,
                "junk body": 4,
                "no call id": 3,
                "odd call id": 5,
            }
        )
        if kind == "wrong token":
            fields["crm_token"] = f.rng.choice(["wrong-token-value-0001", "", CRM_TOKEN + "x", CRM_TOKEN.upper()])
        elif kind == "no token":
            del fields["crm_token"]
        elif kind == "no call id":
            fields.pop("callid")
        elif kind == "odd call id":
            fields["callid"] = f.rng.choice([" ", "a" * 3000, "ё/#?&", "\u0000", f.junk(60)])
            fresh = False  # whatever it maps to, it is not a plain fresh id
        body, headers, _ = f.form_body(fields, kind)
        if account_kind != "valid":
            kind = account_kind
        request = Request(route, "POST", f"/v1/{account}/cloudpbx" + ("" if suffix == "cloudpbx" else f"/{suffix}"))
        request.headers, request.body, request.kind = headers, body, kind
        # What the body says, read as a form whatever its Content-Type: a history or event with the
        # account's token, answered 2xx, must be stored under the call id it names.
        seen = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        said = seen.get("cmd")
        if (
            account_kind == "valid"
            and seen.get("crm_token") == CRM_TOKEN
            and said in ("history", "event")
            and suffix in ("cloudpbx", said)
            and seen.get("callid")
        ):
            request.stores = ("fz", seen["callid"])
            request.fresh = fresh and kind == "valid"
            if kind == "valid":
                f.stored_ids.append((route[1], "fz", seen["callid"]))
        return request

    def fault_webhook(self, route: tuple[str, str]) -> Request:
        """A history or event that is stored when the store works (well-formed, the account's token,
        a call id never sent before), for a fault phase: it must then be answered 503."""
        f = self.f
        suffix = route[1].rsplit("/", 1)[1]
        cmd = suffix if suffix in ("history", "event") else f.rng.choice(["history", "event"])
        f.serial += 1
        call_id = f"FZF{f.serial:06d}"
        fields = {"cmd": cmd, "crm_token": CRM_TOKEN, "callid": call_id, "phone": "79101234567", "user": "andy"}
        if cmd == "history":
            fields.update(type=f.rng.choice(["in", "out"]), status="Success", duration=str(f.rng.randrange(600)))
        else:
            fields.update(type=f.rng.choice(["INCOMING", "ACCEPTED", "COMPLETED", "OUTGOING"]))
        target = "/v1/fz/cloudpbx" + ("" if suffix == "cloudpbx" else f"/{suffix}")
        body = urlencode(fields).encode()
        return Request(route, "POST", target, {"content-type": FORM}, body, FAULT_WEBHOOK, ("fz", call_id), True)

    # ---- recordings
    def recordings(self, route: tuple[str, str]) -> Request:
        f = self.f
        account, account_kind = f.account("fz")
        kind = f.pick(
            {"valid": 40, "wrong password": 15, "no auth": 10, "malformed auth": 10, "no Rec": 10, "odd Rec": 15}
        )
        query: dict[str, str] = {"Rec": f.stored_ids[-1][2] if f.stored_ids else "FZ000001"}
        if kind == "no Rec":
            query = {}
        elif kind == "odd Rec":
            query["Rec"] = f.rng.choice(["", "a" * 5000, f.junk(30)])
        if f.rng.random() < 0.2:
            query["direct"] = f.rng.choice(["1", "true", "2", ""])
        headers: dict[str, str] = {}
        if kind in ("valid", "odd Rec", "no Rec"):
            headers["authorization"] = "Basic " + base64.b64encode(f"{REC_USER}:{REC_PASSWORD}".encode()).decode()
        elif kind == "wrong password":
            headers["authorization"] = "Basic " + base64.b64encode(f"{REC_USER}:nope".encode()).decode()
        elif kind == "malformed auth":
            headers["authorization"] = f.rng.choice(
                ["Basic", "Basic !!!", "Bearer x", "Basic " + "A" * 3000, "Basic /w=="]
            )
        target = f"/v1/{account}/recordings" + (f"?{urlencode(query)}" if query else "")
        return Request(route, "GET", target, headers=headers, kind=kind if account_kind == "valid" else account_kind)

    def signed_recording(self, route: tuple[str, str]) -> Request:
        f = self.f
        account, account_kind = f.account("fz")
        call_id = f.rng.choice(["FZ000001", "a" * 2000, "%FF", quote(f.junk(20), safe=""), "x%2Fy"])
        exp = f.rng.choice([str(int(time.time()) + 600), "0", "", "9" * 13, "1e9", "٣٣٣", "-1", str(2**63)])
        sig = f.rng.choice(["0" * 64, "g" * 64, "", "ab", "F" * 64, f.junk(64)])
        query = {k: v for k, v in {"exp": exp, "sig": sig}.items() if f.rng.random() < 0.9}
        if f.rng.random() < 0.1:
            query["direct"] = "1"
        target = f"/v1/{account}/recordings/{call_id}" + (f"?{urlencode(query)}" if query else "")
        return Request(route, "GET", target, kind="signed url" if account_kind == "valid" else account_kind)

    # ---- click-to-call and the retailCRM callbacks
    def _crm_query(self, extra: dict[str, str]) -> tuple[dict[str, str], str]:
        f = self.f
        kind = f.pick(
            {"valid": 50, "wrong client": 15, "no client": 5, "unknown user": 10, "odd values": 15, "utf8": 5}
        )
        query = {"clientId": CLIENT_ID, "code": f.rng.choice(["101", "102"]), **extra}
        if f.rng.random() < 0.3:
            query["userId"] = f.rng.choice(["1", "2", "x", ""])
        if kind == "wrong client":
            query["clientId"] = f.rng.choice(["wrong-client-id-00001", "", CLIENT_ID + " "])
        elif kind == "no client":
            del query["clientId"]
        elif kind == "unknown user":
            query["code"] = "999"
        elif kind == "odd values":
            key = f.rng.choice(list(query))
            query[key] = f.rng.choice(["", "a" * 4000, f.junk(30)])
        return query, kind

    def make_call(self, route: tuple[str, str]) -> Request:
        f = self.f
        account, account_kind = f.account("fz")
        phone = f.rng.choice(["+79101234567", " 79101234567", "84951234567", "", "12", "+" + "9" * 30, f.junk(10)])
        query, kind = self._crm_query({"phone": phone})
        if f.rng.random() < 0.2:
            query["externalPhone"] = f.rng.choice(["+74951234567", "", f.junk(10)])
        target = f"/v1/{account}/retailcrm/make-call?" + urlencode(query)
        if kind == "utf8":
            target += "&phone=%FF%FE"
        return Request(route, "GET", target, kind=kind if account_kind == "valid" else account_kind)

    def user_status(self, route: tuple[str, str]) -> Request:
        f = self.f
        account, account_kind = f.account("fz")
        status = f.rng.choice(["free", "busy", "dinner", "break", "FREE", "", "asleep", f.junk(8)])
        query, kind = self._crm_query({"status": status})
        target = f"/v1/{account}/retailcrm/user-status?" + urlencode(query)
        if kind == "utf8":
            target += "&status=%C3%28"
        return Request(route, "GET", target, kind=kind if account_kind == "valid" else account_kind)

    def api_call(self, route: tuple[str, str]) -> Request:
        f = self.f
        account, account_kind = f.account("fz")
        kind = f.pick(
            {
                "valid": 35,
                "wrong key": 10,
                "no key": 5,
                "wrong content type": 8,
                "not json": 8,
                "invalid utf-8": 5,
                "wrong types": 10,
                "extra fields": 5,
                "deep": 4,
                "oversized": 4,
                "unknown user": 6,
            }
        )
        payload: Any = {"user": f.rng.choice(["andy", "daria"]), "phone": f.rng.choice(["+79101234567", "84951234567"])}
        if f.rng.random() < 0.3:
            payload = {"extension": "101", "phone": "+79101234567"}
        headers = {"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}
        body: bytes
        if kind == "wrong key":
            headers["authorization"] = f.rng.choice(["Bearer wrong-key-000000000001", "Bearer", "Basic x", API_KEY, ""])
        elif kind == "no key":
            del headers["authorization"]
        elif kind == "wrong content type":
            headers["content-type"] = f.rng.choice(
                ["text/plain", FORM, "application/jsonx", "", "application/json; charset=latin-1"]
            )
        elif kind == "wrong types":
            payload = f.rng.choice(
                [
                    {"user": 5, "phone": "+79101234567"},
                    {"user": "andy", "phone": ["1"]},
                    [1, 2],
                    "x",
                    7,
                    None,
                    {"user": "andy"},
                    {"phone": None},
                    {"user": "", "phone": ""},
                    {"user": "andy", "phone": True},
                ]
            )
        elif kind == "extra fields":
            payload = {**payload, self.f.junk(8) or "x": "y"}
        elif kind == "unknown user":
            payload = {"user": "nobody", "phone": "+79101234567"}
        if kind == "not json":
            body = f.rng.choice([b"{", b"", b"nope", b"{'user': 'andy'}", b"\x00\x01"])
        elif kind == "invalid utf-8":
            body = b'{"user": "\xff\xfe", "phone": "+79101234567"}'
        elif kind == "deep":
            depth = f.rng.choice([50, 5000, 200_000])
            body = (b"[" * depth) + (b"]" * depth)
        elif kind == "oversized":
            body = json.dumps({"user": "andy", "phone": "+79101234567", "clid": "1" * 500_000}).encode()
        else:
            body = json.dumps(payload).encode()
        if not headers.get("content-type"):
            headers.pop("content-type", None)
        return Request(
            route, "POST", f"/v1/{account}/calls", headers, body, kind if account_kind == "valid" else account_kind
        )

    # ---- telediscount
    def telediscount(self, route: tuple[str, str]) -> Request:
        f = self.f
        which = route[1].rsplit("/", 1)[1]
        account, account_kind = f.account("td")
        secret = TD_SECRET
        kind = f.pick(
            {
                "valid": 20,
                "wrong secret": 25,
                "no call id": 10,
                "odd values": 14,
                "utf8": 5,
                "oversized": 3,
                "body": 5,
                "odd call id": 8,
            }
        )
        if kind == "wrong secret":
            secret = f.rng.choice(["not-the-secret-000000", "", "%FF", "a" * 500])
        call_id, fresh = f.call_id()
        query = {
            "api_call_id": call_id,
            "num_a": f.rng.choice(["79039998877", "SIP/00000000672", "", "0" * 30]),
            "num_m": "79037778899",
            "num_b": f.rng.choice(["SIP/0000000672", "SIP/00000000672", "74951234567", ""]),
            "setup_time": f.rng.choice(["1714554000", "", "98798798797897", "junk", "-1"]),
        }
        if which == "finished":
            query.update(
                connection_time=f.rng.choice(["12", "0", "", "x", "9" * 30]),
                waiting_time=f.rng.choice(["5", "", "-3", "1.5"]),
            )
        if kind == "no call id":
            del query["api_call_id"]
        elif kind == "odd call id":
            query["api_call_id"] = f.rng.choice(["", " ", "a" * 3000, f.junk(40)])
        elif kind == "odd values":
            key = f.rng.choice(list(query))
            query[key] = f.rng.choice(["", "a" * 3000, f.junk(30)])
        elif kind == "oversized":
            query["comment"] = "x" * f.rng.choice([10_000, 60_000])
        target = f"/v1/{account}/telediscount/{secret}/{which}?" + urlencode(query)
        if kind == "utf8":
            target += "&num_a=%FF%FE"
        body = f.junk(200).encode() if kind == "body" else None
        request = Request(route, "GET", target, body=body, kind=kind if account_kind == "valid" else account_kind)
        # A call from one SIP account to another is internal and, as documented (docs/sources.md,
        # "telediscount"), acknowledged without being stored: only client calls must be. (A repeated
        # num_a, the "utf8" kind, leaves which one counts to the gateway: not checked.)
        internal = which == "finished" and all(is_sip(query.get(k, "")) for k in ("num_a", "num_b"))
        if (
            account_kind == "valid"
            and secret == TD_SECRET
            and kind in ("valid", "odd values", "oversized", "body")
            and not internal
        ):
            request.stores = ("td", query["api_call_id"])
            request.fresh = fresh and kind == "valid"
            if kind == "valid":
                f.stored_ids.append((route[1], "td", call_id))
        return request

    # ---- any other route: from its OpenAPI description
    def generic(self, route: tuple[str, str]) -> Request:
        f = self.f
        method, template = route
        operation = openapi_operation(method, template)
        path = template
        for parameter in operation.get("parameters", []):
            if parameter.get("in") != "path":
                continue
            value = f.account("fz")[0] if parameter["name"] == "account" else quote(f.junk(20) or "x", safe="")
            path = path.replace("{" + parameter["name"] + "}", value)
        query: dict[str, str] = {}
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query" and (parameter.get("required") or f.rng.random() < 0.5):
                enum = parameter.get("schema", {}).get("enum")
                query[parameter["name"]] = f.rng.choice([*(enum or []), "", f.junk(), "1", "-1", "9" * 30])
        headers = {"authorization": f.rng.choice([f"Bearer {API_KEY}", "Bearer wrong-key-000000000001", "Basic x"])}
        body: bytes | None = None
        content = (operation.get("requestBody") or {}).get("content", {})
        if content:
            content_type = f.rng.choice([*content, "text/plain"])
            headers["content-type"] = content_type
            properties = (content.get(content_type, {}).get("schema") or {}).get("properties", {})
            fields = {
                name: f.rng.choice(["", f.junk(), "andy", "+79101234567", "history", CRM_TOKEN]) for name in properties
            }
            body = json.dumps(fields).encode() if "json" in content_type else urlencode(fields).encode()
        target = path + (f"?{urlencode(query)}" if query else "")
        return Request(route, method, target, headers, body, "from openapi")


# -- the run ------------------------------------------------------------------------------------
ACCOUNT = """\
account: fz
phone_region: RU
timezone: Europe/Moscow
pbx: {{kind: cloudpbx, api_url: "{pbx}{pbx_path}", token: {pbx_token}, crm_tokens: [{crm_token}]}}
api_keys: [{api_key}]
crms:
  - {{kind: retailcrm, base_url: "{crm}", api_key: {crm_key}, client_id: {client_id}, mode: batch, call_events: false}}
  - {{kind: minicrm, base_url: "{mini}", api_key: {mini_key}, mode: batch, default_user_extension: "900"}}
users:
  - {{pbx_user: andy, extension: "101", retailcrm_user_id: 1, retailcrm_code: "101"}}
  - {{pbx_user: daria, extension: "102", retailcrm_user_id: 2, retailcrm_code: "102"}}
contacts:
  - {{name: Fuzz Client, phones: ["+79101234567"], responsible: andy}}
recordings:
  basic_auth: {{username: {rec_user}, password: {rec_password}}}
"""
TELE = """\
account: td
phone_region: RU
pbx: {{kind: telediscount, api_url: "{tele}/api.php/telephony", api_key: {td_key}, webhook_secret: {td_secret}}}
users:
  - {{pbx_user: olga, sip_account: "SIP/00000000672"}}
"""


@dataclass
class World:
    bridge: LocalBridge
    pbx_url: str
    pbx: FakeCloudPbx
    retail: FakeRetailCrm
    mini: FakeMiniCrm
    crm_faults: crm_server.Faults  # both CRMs' (off during the front-door run)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with ExitStack() as stack:
        pbx = FakeCloudPbx(token=PBX_TOKEN)
        pbx_url = stack.enter_context(crm_server.serve(pbx))
        crm_faults = crm_server.Faults(seed=SEED)
        retail, mini = FakeRetailCrm(api_key=CRM_KEY), FakeMiniCrm(MINI_KEY)
        crm_url = stack.enter_context(crm_server.serve(retail, crm_faults))
        mini_url = stack.enter_context(crm_server.serve(mini, crm_faults))
        tele_url = stack.enter_context(td_server.serve(FakeTelediscount(api_key=TD_KEY)))
        directory: Path = tmp_path_factory.mktemp("fuzz-accounts")
        for name, text in (
            (
                "fz",
                ACCOUNT.format(
                    pbx=pbx_url,
                    pbx_path=PBX_PATH,
                    pbx_token=PBX_TOKEN,
                    crm_token=CRM_TOKEN,
                    api_key=API_KEY,
                    crm=crm_url,
                    crm_key=CRM_KEY,
                    mini=mini_url,
                    mini_key=MINI_KEY,
                    client_id=CLIENT_ID,
                    rec_user=REC_USER,
                    rec_password=REC_PASSWORD,
                ),
            ),
            ("td", TELE.format(tele=tele_url, td_key=TD_KEY, td_secret=TD_SECRET)),
        ):
            config = trusting_fakes(yaml.safe_load(text))
            (directory / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        # Delivery retried at once and parked after a few tries, without waiting for recordings: the
        # delivery phase ends in seconds. Calls ringing for a minute are the ringing sweep's.
        params = {
            "MissedCallSettleSeconds": "1",
            "MaxRingingSeconds": "60",
            "DeliveryRetryBaseSeconds": "0",
            "DeliveryMaxAttempts": str(DELIVERY_ATTEMPTS),
            "DeliveryHttpAttempts": "1",
            "DeliveryRecordingWaitSeconds": "0",
            # Small chunks: a hundred calls become dozens of CRM requests, enough for every fault kind.
            "DeliveryChunk": str(DELIVERY_CHUNK),
        }
        bridge = stack.enter_context(running_bridge(directory, params=params))
        yield World(bridge, pbx_url, pbx, retail, mini, crm_faults)


def send(client: httpx.Client, request: Request) -> Request:
    began = time.monotonic()
    try:
        response = client.request(request.method, request.target, headers=request.headers, content=request.body)
        request.status, request.answer = response.status_code, response.text[:300]
    except httpx.HTTPError as exc:  # the runtime dropped the connection: as bad as a 5xx
        request.status, request.answer = 599, f"{type(exc).__name__}: {exc}"
    request.seconds = time.monotonic() - began
    return request


def set_fault(client: httpx.Client, error: str | None) -> None:
    answer = client.post("/_local/faults/dynamodb", params={"error": error or ""})
    assert answer.status_code == 200 and answer.json()["dynamodbWrites"] == error, answer.text


def stored_calls(bridge: LocalBridge, wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (account, call id) pairs have a record (an EVT# marker) in the calls table: one
    consistent scan of the table's markers, not a query per call (thousands of round trips)."""
    by_pk = {call_pk(account, call_id): (account, call_id) for account, call_id in wanted}
    pages = (
        bridge.client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=bridge.env["CALLS_TABLE"],
            FilterExpression="begins_with(sk, :evt)",
            ExpressionAttributeValues={":evt": {"S": EVENT_PREFIX}},
            ProjectionExpression="pk",
            ConsistentRead=True,
        )
    )
    marked = {item["pk"]["S"] for page in pages for item in page["Items"]}
    return {key for pk, key in by_pk.items() if pk in marked}


@dataclass
class Downstream:
    """What the delivery phase found: one scan of the calls table."""

    final: dict[str, set[str]] = field(default_factory=dict)  # account -> final call ids
    live: Counter[str] = field(default_factory=Counter)  # state of calls not final yet
    unwatched: list[str] = field(default_factory=list)  # ringing, but not watched by the ringing sweep
    states: Counter[tuple[str, str]] = field(default_factory=Counter)  # (crm, state) -> deliveries
    delivered: dict[str, set[str]] = field(default_factory=dict)  # crm -> call ids delivered (fz)
    problems: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)  # parked deliveries' reasons (first words)


def settle_downstream(client: httpx.Client) -> list[dict[str, Any]]:
    """Everything due now, settled: the queues (settles, recording fetches) without the messages SQS
    still holds back, the ringing sweep, then drain runs until one finds nothing to claim after the
    longest Retry-After (1 s). The drain reports."""
    began = time.monotonic()
    # A recording fetch the worker deferred (a link that answers 404 may work later: it comes back
    # after its backoff, in flight meanwhile) is not waited for: no delivery here waits for its
    # recording (DeliveryRecordingWaitSeconds 0). Settles and deliveries must all be done.
    for _ in range(QUEUE_DRAINS):
        drained = client.post("/_local/queues/drain", params={"delayed": "0", "timeout": "2"})
        assert drained.status_code in (200, 504), drained.text
        left = {name: f["remaining"] for name, f in drained.json()["functions"].items() if f["remaining"]}
        if not {name for name in left if not name.startswith("RecordingFetch")}:
            break
    print(f"fuzz: queues drained in {time.monotonic() - began:.1f} s, left (deferred recording fetches): {left}")
    assert not {name for name in left if not name.startswith("RecordingFetch")}, drained.text
    swept = client.post("/_local/schedules/RingingSweepFunction")
    assert swept.status_code == 200, swept.text
    print(f"fuzz: ringing sweep {swept.json()}, at {time.monotonic() - began:.1f} s")
    reports: list[dict[str, Any]] = []
    idle = 0
    while len(reports) < DRAIN_RUNS and idle < 2:
        answer = client.post("/_local/schedules/DeliveryDrainFunction")
        assert answer.status_code == 200, answer.text
        reports.append(answer.json())
        print(f"fuzz: drain run {len(reports)}: {reports[-1]['claimed']} claimed, at {time.monotonic() - began:.1f} s")
        idle = idle + 1 if reports[-1]["claimed"] == 0 else 0
        if reports[-1]["claimed"] == 0:
            time.sleep(1.1)  # a 429's Retry-After
    return reports


def downstream(bridge: LocalBridge) -> Downstream:
    """One consistent scan of the calls table: the calls, their deliveries and the ringing sweep's
    entries, checked against each other."""
    pages = (
        bridge.client("dynamodb")
        .get_paginator("scan")
        .paginate(
            TableName=bridge.env["CALLS_TABLE"],
            FilterExpression="sk = :call OR begins_with(sk, :dlv) OR begins_with(pk, :open)",
            ExpressionAttributeValues={
                ":call": {"S": CALL_SK},
                ":dlv": {"S": DELIVERY_PREFIX},
                ":open": {"S": OPEN_PREFIX},
            },
            ProjectionExpression="pk, sk, #a, #c, #f, #r, #ab, #st, #rs, #le, #lu",
            ExpressionAttributeNames={
                "#a": "account",
                "#c": "call_id",
                "#f": "final",
                "#r": "ringing",
                "#ab": "accepted_by",
                "#st": "state",
                "#rs": "reason",
                "#le": "last_error",
                "#lu": "lease_until",
            },
            ConsistentRead=True,
        )
    )
    calls: dict[str, dict[str, Any]] = {}
    deliveries: list[dict[str, Any]] = []
    watched: set[str] = set()
    for page in pages:
        for item in page["Items"]:
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            if pk.startswith(OPEN_PREFIX):
                if pk.endswith("#ringing") and "call_id" in item:
                    watched.add(call_pk(pk.split("#")[1], item["call_id"]["S"]))
            elif sk == CALL_SK:
                calls[pk] = item
            else:
                deliveries.append(item)
    found = Downstream()
    for pk, item in calls.items():
        account = item.get("account", {}).get("S", "?")
        if item.get("final", {}).get("BOOL"):
            found.final.setdefault(account, set()).add(item.get("call_id", {}).get("S", pk))
        elif "ringing" in item:
            found.live["ringing"] += 1
            # The sweep watches what may still be missed: an incoming call nobody answered
            # (core/record.py _watch_ringing). An outgoing call is never missed, and an answered one
            # whose other phones ring on is not either; fuzzed events arrive in any order, so an
            # ACCEPTED or OUTGOING before an INCOMING makes such calls.
            may_be_missed = item.get("direction", {}).get("S", "in") == "in" and "accepted_by" not in item
            if may_be_missed and pk not in watched:
                shown = {k: item[k] for k in ("ringing", "stopped", "first_event_at", "last_event_at") if k in item}
                found.unwatched.append(f"{pk} {shown}")
        else:
            found.live["answered" if "accepted_by" in item else "not ringing"] += 1
    seen: dict[str, set[str]] = {}
    for item in deliveries:
        pk, crm = item["pk"]["S"], item["sk"]["S"].removeprefix(DELIVERY_PREFIX)
        state = item.get("state", {}).get("S", "?")
        found.states[(crm, state)] += 1
        seen.setdefault(pk, set()).add(crm)
        call = calls.get(pk, {})
        if not call.get("final", {}).get("BOOL"):
            found.problems.append(f"{pk}: a delivery to {crm} of a call that is not final")
        if state not in TERMINAL:
            leased = " (leased)" if "lease_until" in item else ""
            found.problems.append(f"{pk}: {crm} left {state}{leased}")
        elif state in ("rejected", "failed"):
            reason = item.get("reason", item.get("last_error", {})).get("S", "")
            if not reason.strip():
                found.problems.append(f"{pk}: {crm} parked {state} without a reason")
            found.reasons[f"{crm} {state}: {' '.join(reason.split()[:4])}"] += 1
        if state == "delivered" and call.get("account", {}).get("S") == "fz":
            found.delivered.setdefault(crm, set()).add(call["call_id"]["S"])
    for call_id in sorted(found.final.get("fz", set())):
        missing = {"retailcrm", "minicrm"} - seen.get(call_pk("fz", call_id), set())
        if missing:
            found.problems.append(f"{call_id}: final, but no delivery to {sorted(missing)}")
    return found


def test_fuzz_every_route(world: World) -> None:
    started = time.monotonic()
    routes = openapi_routes()
    served = {tuple(r["routeKey"].split(" ", 1)) for r in httpx.get(world.bridge.url("/_local/routes")).json()}
    assert set(routes) == served, f"docs/openapi.yaml and the runtime's routes differ: {set(routes) ^ served}"
    fuzz = Fuzzer(SEED)
    gen = Routes(fuzz, world.pbx_url)
    webhooks = [r for r in routes if r[1].startswith("/v1/{account}/cloudpbx") and not r[1].endswith("/contact")]
    sent: list[Request] = []
    retried: list[Request] = []
    limits = httpx.Limits(max_connections=WORKERS, max_keepalive_connections=WORKERS)
    with (
        httpx.Client(base_url=world.bridge.base_url, timeout=60, limits=limits) as client,
        ThreadPoolExecutor(WORKERS) as pool,
    ):
        chunk_number = 0
        while len(sent) < REQUESTS:
            chunk = [gen.build(fuzz.rng.choice(routes)) for _ in range(min(CHUNK, REQUESTS - len(sent)))]
            sent += pool.map(lambda r: send(client, r), chunk)
            chunk_number += 1
            print(f"fuzz: {len(sent)} sent, {time.monotonic() - started:.1f} s", flush=True)
            if chunk_number % FAULT_EVERY == 0 and len(sent) < REQUESTS:
                error = FAULTS[(chunk_number // FAULT_EVERY) % len(FAULTS)]
                faulty = [gen.fault_webhook(fuzz.rng.choice(webhooks)) for _ in range(FAULT_CHUNK // 2)]
                faulty += [gen.build(fuzz.rng.choice(routes), fault=error) for _ in range(FAULT_CHUNK // 2)]
                for request in faulty:
                    request.fault = error
                set_fault(client, error)
                try:
                    sent += pool.map(lambda r: send(client, r), faulty)
                finally:
                    set_fault(client, None)
                # The PBX retries what was not acknowledged; now the store is back.
                again = [
                    Request(r.route, r.method, r.target, dict(r.headers), r.body, "retry", r.stores)
                    for r in faulty
                    if r.kind == FAULT_WEBHOOK
                ]
                retried += pool.map(lambda r: send(client, r), again)
    elapsed = time.monotonic() - started
    everything = sent + retried

    # -- the figures
    statuses = Counter(r.status for r in everything)
    per_route = Counter(r.route for r in sent)
    must_store = {r.stores for r in everything if r.stores is not None and 200 <= r.status < 300}
    found = stored_calls(world.bridge, must_store)
    print(f"fuzz: store checked in {time.monotonic() - started - elapsed:.1f} s", flush=True)
    faulted = [r for r in sent if r.fault]
    print(
        f"\nfuzz: seed {SEED}, {len(everything)} requests ({len(faulted)} during store faults, {len(retried)} retries)"
        f" in {elapsed:.1f} s; answers {dict(sorted(statuses.items()))}; 2xx history/event checked in the store:"
        f" {len(must_store)}, found {len(found)}"
    )
    cost: dict[str, float] = {}
    for r in everything:
        key = f"{r.route[1].rsplit('/', 1)[1]} {r.kind}"
        cost[key] = cost.get(key, 0.0) + r.seconds
    slowest = sorted(cost.items(), key=lambda item: -item[1])[:12]
    print("fuzz: slowest kinds (s) " + ", ".join(f"{k}: {v:.1f}" for k, v in slowest))
    print("fuzz: per route " + ", ".join(f"{m} {p}: {n}" for (m, p), n in sorted(per_route.items())))

    # -- what must hold
    assert len(sent) >= REQUESTS
    thin = [f"{m} {p}" for m, p in routes if per_route[(m, p)] < MIN_PER_ROUTE]
    assert not thin, f"routes fuzzed fewer than {MIN_PER_ROUTE} times: {thin}"
    server_errors = [r for r in everything if r.status >= 500 and not (r.fault and r.status == 503)]
    if server_errors:  # what the runtime logged about them (not the store faults' own failures)
        for line in world.bridge.output().splitlines():
            if '"level":"ERROR"' in line and '"call_id":"FZF' not in line:
                entry = json.loads(line[line.index("{") :])
                trace = str(entry.get("exception", "")).strip().splitlines()
                print(f"runtime: {entry.get('message')} {entry.get('account')} :: {' | '.join(trace[-3:])[:800]}")
    assert not server_errors, "5xx answers:\n" + "\n".join(
        f"{r.status} {r.method} {r.target[:120]} [{r.kind}] {r.answer[:200]}" for r in server_errors[:15]
    )
    acknowledged_in_fault = [r for r in faulted if r.fresh and 200 <= r.status < 300]
    assert not acknowledged_in_fault, "a fresh history/event was acknowledged while the store failed:\n" + "\n".join(
        f"{r.status} {r.target[:100]} {r.answer[:100]}" for r in acknowledged_in_fault[:10]
    )
    not_retryable = [r for r in faulted if r.kind == FAULT_WEBHOOK and r.status != 503]
    assert not not_retryable, "a well-formed history/event hitting a store fault was not answered 503:\n" + "\n".join(
        f"{r.status} {r.fault} {r.target} {r.body!r} {r.answer[:200]}" for r in not_retryable[:10]
    )
    missing = sorted(must_store - found)
    assert not missing, f"{len(missing)} history/event answered 2xx but not stored: {missing[:10]}"
    assert retried and all(200 <= r.status < 300 for r in retried), Counter(r.status for r in retried)
    assert world.pbx.errors == [], world.pbx.errors

    # -- the delivery side: every stored call settled with each CRM, against CRMs that misbehave
    began = time.monotonic()
    world.crm_faults.share = CRM_FAULT_SHARE
    with httpx.Client(base_url=world.bridge.base_url, timeout=120) as client:
        reports = settle_downstream(client)
    scanned = time.monotonic()
    settled = downstream(world.bridge)
    print(f"fuzz: calls table scanned in {time.monotonic() - scanned:.1f} s")
    extra = time.monotonic() - began
    totals = Counter[str]()
    for report in reports:
        totals.update({k: v for k, v in report.items() if isinstance(v, int)})
    print(
        f"fuzz: delivery phase {extra:.1f} s, {len(reports)} drain runs {dict(sorted(totals.items()))}; final calls"
        f" { ({a: len(c) for a, c in sorted(settled.final.items())}) }, not final {dict(settled.live)}; deliveries"
        f" {dict(sorted(settled.states.items()))}; CRM faults {dict(world.crm_faults.answered)}"
    )
    print("fuzz: parked " + "; ".join(f"{k} x{n}" for k, n in settled.reasons.most_common(8)))
    assert not settled.problems, f"{len(settled.problems)} calls not settled downstream:\n" + "\n".join(
        settled.problems[:15]
    )
    assert not settled.unwatched, f"ringing calls the ringing sweep does not watch: {settled.unwatched[:10]}"
    assert set(world.crm_faults.answered) == set(crm_server.FAULT_KINDS), world.crm_faults.answered
    assert (
        settled.final.get("fz")
        and settled.states[("retailcrm", "delivered")]
        and settled.states[("minicrm", "delivered")]
    )
    assert world.retail.errors == [] and world.mini.errors == [], (world.retail.errors[:5], world.mini.errors[:5])
    # What the CRMs hold is what is marked delivered, each call once (a faulty answer never took it).
    twice = {c: n for c, n in world.retail.received.items() if n > 1}
    assert not twice, f"calls uploaded to retailCRM more than once: {twice}"
    assert set(world.retail.calls) == settled.delivered["retailcrm"]
