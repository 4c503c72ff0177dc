"""The PBX side's parameter table: one PbxProfile per adapter of callbridge.registry.PBX.

A new PBX gets every check of test_pbx_contract.py by adding its profile to PBXS: its account-file
entry for a given set of credentials, the fake API it talks to (if any), how the PBX hands us one
final call (a webhook through the function's handler, or a scheduled poll), what accepted and refused
look like, which strings must never be stored, and - in `skips` - the checks that do not apply to it
and why. A credential is what the PBX side holds: the token it presents on our webhooks, or, for a
polled PBX, the key its API accepts.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import ccrm_poll
import cloudpbx
import pbx_webhook as telediscount
from tests.fakes import base, crm_server
from tests.fakes.ccrm import FakeCcrm, record
from tests.fakes.cloudpbx_api import FakeCloudPbx
from tests.fakes.telediscount import FakeTelediscount
from tests.fakes.zadarma import FakeZadarma, notification
from tests.support import form, http_event, seed_history

# Checks a profile may skip (with its reason): the keys of PbxProfile.skips.
ROTATION_OVERLAP = "rotation_overlap"  # the previous and the current credential both accepted
NOT_A_WEBHOOK = "webhook"  # webhook-only wording of a check; the poll equivalent runs instead


@dataclass(frozen=True)
class Answer:
    """What the PBX got back: an HTTP answer of a webhook, or a scheduled poll's result."""

    status: int
    body: Any


@dataclass
class PbxRun:
    """One account of the profile's kind, its fake PBX API, and the frozen clock."""

    account: str
    fake: Any
    url: str
    now: list[datetime]


@dataclass(frozen=True)
class PbxProfile:
    kind: str
    # the credential the fake PBX API itself expects (our requests to the PBX: makeCall, get_calls…)
    api_key: str
    # api key -> a fake PBX API that validates our requests, and how to serve it on 127.0.0.1
    fake: Callable[[str], Any]
    serve: Callable[[Any], AbstractContextManager[str]]
    # (fake URL, credentials: current first, then the previous one) -> the account file's `pbx`
    settings: Callable[[str, list[str]], dict[str, Any]]
    # the rest of the account file (phone_region, users…)
    account: dict[str, Any]
    # n -> the id of the n-th contract call, as this PBX spells call ids
    call_id: Callable[[int], str]
    # the PBX hands us the final call `call_id` holding `credential`
    send: Callable[[PbxRun, str, str], Answer]
    accepted: Callable[[Answer], bool]
    refused: Callable[[Answer], bool]  # the documented answer to a wrong credential
    # the CALL item attribute that keeps the PBX's raw record
    raw_attribute: str
    # check -> why it does not apply to this PBX (the test is skipped with this reason)
    skips: dict[str, str] = field(default_factory=dict)
    # check -> why this adapter is known to fail it (run as a strict xfail: fixing it shows)
    known_gaps: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.kind


def _handler_answer(response: dict[str, Any]) -> Answer:
    body = response.get("body") or ""
    return Answer(int(response["statusCode"]), json.loads(body) if body else None)


# -- Cloud PBX: POSTs every command to /v1/{account}/cloudpbx with crm_token in the body ----------------
CLOUDPBX_API_TOKEN = "contract-cloudpbx-api-token-01"


def _cloudpbx_send(run: PbxRun, credential: str, call_id: str) -> Answer:
    fields = seed_history(crm_token=credential, callid=call_id, start="20240501T055800Z")
    event = http_event(f"/v1/{run.account}/cloudpbx", form(**fields), account=run.account)
    return _handler_answer(cloudpbx.handler(event, None))


CLOUDPBX = PbxProfile(
    kind="cloudpbx",
    api_key=CLOUDPBX_API_TOKEN,
    fake=FakeCloudPbx,
    serve=crm_server.serve,
    settings=lambda url, credentials: {
        "kind": "cloudpbx",
        "api_url": f"{url}/sys/crm_api.wcgp",
        "token": CLOUDPBX_API_TOKEN,
        "crm_tokens": credentials,
    },
    account={"phone_region": "RU", "users": [{"pbx_user": "andy", "extension": "101"}]},
    call_id=lambda n: f"B10D0EB124F4E64AF4EA-{n:04d}",
    send=_cloudpbx_send,
    accepted=lambda answer: answer.status == 200,
    refused=lambda answer: (answer.status, answer.body) == (401, {"error": "Invalid token"}),  # docs/cloudpbx.md
    raw_attribute="history_raw",
)


# -- telediscount: GETs /v1/{account}/telediscount/{secret}/finished; the URL is the credential --------
TELEDISCOUNT_API_KEY = "abonent-contract-api-key-0001"


def _telediscount_send(run: PbxRun, credential: str, call_id: str) -> Answer:
    path = f"/v1/{run.account}/telediscount/{credential}/finished"
    params = {
        "num_a": "79039998877",
        "num_m": "79037778899",
        "num_b": "SIP/00000000672",
        "setup_time": "20240501085800",
        "connection_time": "12",
        "waiting_time": "5",
        "api_call_id": call_id,
    }
    event = {
        "version": "2.0",
        "routeKey": "GET /v1/{account}/telediscount/{secret}/finished",
        "rawPath": path,
        "rawQueryString": urlencode(params),
        "headers": {"host": "api.example.com", "user-agent": "telediscount"},
        "queryStringParameters": params,
        "pathParameters": {"account": run.account, "secret": credential},
        "requestContext": {
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.20"},
            "requestId": "req",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }
    return _handler_answer(telediscount.handler(event, None))


TELEDISCOUNT = PbxProfile(
    kind="telediscount",
    api_key=TELEDISCOUNT_API_KEY,
    fake=FakeTelediscount,
    serve=base.serve,
    settings=lambda url, credentials: {
        "kind": "telediscount",
        "api_url": f"{url}/api.php/telephony",
        "api_key": TELEDISCOUNT_API_KEY,
        "webhook_secret": credentials[0],
    },
    account={"phone_region": "RU", "users": [{"pbx_user": "olga", "sip_account": "SIP/00000000672"}]},
    call_id=lambda n: f"c1f926a8f5727b77f9cbf39d8f35{n:04d}",
    send=_telediscount_send,
    accepted=lambda answer: answer.status == 200,
    # a wrong secret is a wrong address: 404, like an unknown account (callbridge.pbx.telediscount.webhooks)
    refused=lambda answer: (answer.status, answer.body) == (404, {"error": "Not found"}),
    raw_attribute="history_raw",
    skips={
        ROTATION_OVERLAP: "telediscount has one webhook_secret (the URL path segment): an account cannot "
        "accept a previous and a current one while the PBX cabinet is being changed",
    },
)


# -- ccrm.pl: no webhooks; we poll callHistory with a Bearer key (functions/ccrm_poll.py) --------------
WARSAW = ZoneInfo("Europe/Warsaw")
_polls = itertools.count(1)


def _ccrm_send(run: PbxRun, credential: str, call_id: str) -> Answer:
    """ccrm.pl holds `credential` as its API key and has the call; our next scheduled poll runs
    (five minutes after the previous one: the windows overlap)."""
    run.fake.api_key = credential
    if not any(r["uuid"] == call_id for r in run.fake.records):
        started = (run.now[0] - timedelta(minutes=3)).astimezone(WARSAW)
        run.fake.add(record(call_id, started.strftime("%Y-%m-%d %H:%M:%S")))
    result = ccrm_poll.handler({"callbridge_account": run.account}, None)
    run.now[0] += timedelta(minutes=5)
    outcome = result["accounts"][run.account]
    return Answer(500 if outcome.get("status") == "failed" else 200, outcome)


CCRM = PbxProfile(
    kind="ccrm",
    api_key="contract-ccrm-api-key-0001",
    fake=FakeCcrm,
    serve=base.serve,
    settings=lambda url, credentials: {"kind": "ccrm", "base_url": url, "api_key": credentials[0]},
    account={"phone_region": "PL", "users": [{"pbx_user": "jan", "ccrm_internal": "107"}]},
    call_id=lambda n: f"e4baaa94-095a-41b3-b638-{n:012d}",
    send=_ccrm_send,
    accepted=lambda answer: answer.status == 200 and answer.body.get("status") == "complete",
    # the poll fails cleanly: the account's result says so (the function itself answers, others go on)
    refused=lambda answer: answer.body == {"status": "failed", "error": "CcrmError"},
    raw_attribute="history_raw",
    skips={
        NOT_A_WEBHOOK: "ccrm.pl has no webhooks (we poll it): the poll equivalent runs instead",
        ROTATION_OVERLAP: "ccrm.pl has no webhooks: it holds one API key and we present it; there is "
        "no previous key to keep accepting",
    },
    known_gaps={
        "applied_at_once": "a warm ccrm_poll reads a changed API key when it next reads the account "
        "(CREDENTIAL_CACHE_SECONDS, infra.secrets by the account's revision), not at once: no refresh on a 401",
        "refused_then_applied": "the same: a warm ccrm_poll presents the old key until it reads the account again",
    },
)

# -- Zadarma: POSTs signed notifications to /v1/{account}/zadarma/{secret}; the path secret is the
# credential, the Signature (the API secret's) is checked after it -----------------------------------
ZADARMA_API_KEY, ZADARMA_API_SECRET = "contract-zadarma-key-01", "contract-zadarma-secret-01"


def _zadarma_send(run: PbxRun, credential: str, call_id: str) -> Answer:
    fields, signature = notification(
        ZADARMA_API_SECRET,
        "NOTIFY_END",
        pbx_call_id=call_id,
        caller_id="+4930123456",
        called_did="4930999000",
        call_start="2024-05-01 07:58:00",
        internal="100",
        duration="12",
        disposition="answered",
        status_code="16",
        is_recorded="0",
        call_id_with_rec="",
    )
    path = f"/v1/{run.account}/zadarma/{credential}"
    event = {
        "version": "2.0",
        "routeKey": "POST /v1/{account}/zadarma/{secret}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/x-www-form-urlencoded", "signature": signature},
        "pathParameters": {"account": run.account, "secret": credential},
        "requestContext": {
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "185.45.152.42"},
            "requestId": "req",
            "stage": "$default",
        },
        "body": urlencode(fields),
        "isBase64Encoded": False,
    }
    return _handler_answer(telediscount.handler(event, None))  # the same PbxWebhookFunction handler


ZADARMA = PbxProfile(
    kind="zadarma",
    api_key=ZADARMA_API_KEY,
    fake=lambda key: FakeZadarma(key=key, secret=ZADARMA_API_SECRET),
    serve=base.serve,
    settings=lambda url, credentials: {
        "kind": "zadarma",
        "api_url": url,
        "api_key": ZADARMA_API_KEY,
        "api_secret": ZADARMA_API_SECRET,
        "webhook_secret": credentials[0],
    },
    account={"phone_region": "DE", "timezone": "Europe/Berlin", "users": [{"pbx_user": "100", "name": "Anna"}]},
    call_id=lambda n: f"in_0f3c9a7e5b1d{n:028d}",
    send=_zadarma_send,
    accepted=lambda answer: answer.status == 200,
    # a wrong secret is a wrong address: 404, like an unknown account (callbridge.pbx.zadarma.webhooks)
    refused=lambda answer: (answer.status, answer.body) == (404, {"error": "Not found"}),
    raw_attribute="history_raw",
    skips={
        ROTATION_OVERLAP: "Zadarma has one notification address (its webhook_secret is a path segment): an "
        "account cannot accept a previous and a current one while the cabinet is being changed",
    },
)

PBXS: list[PbxProfile] = [CLOUDPBX, TELEDISCOUNT, CCRM, ZADARMA]


def credentials(prefix: str) -> Iterator[str]:
    """Fresh 16+ character credentials (webhook tokens must be long random strings)."""
    for n in itertools.count(1):
        yield f"{prefix}-credential-{n:04d}"
