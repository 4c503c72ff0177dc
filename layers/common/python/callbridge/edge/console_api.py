"""The operator console's API as API Gateway (HTTP API) sees it: routing and the one mapping of
refusals and failures to statuses. What each answer holds is callbridge.features.console's.

GET  /v1/{account}/health                              the account's health
GET  /v1/{account}/users                               PBX user ↔ CRM users, unmapped first
GET  /v1/{account}/settings                            the account's settings, every secret masked
GET  /v1/{account}/calls/{callid}/redeliver/{crm}      what a redelivery would do now
POST /v1/{account}/calls/{callid}/redeliver/{crm}      send the call to that CRM again, once

All take `Authorization: Bearer <account API key>`, as the call history does (edge/calls.py): an
unknown account and a wrong key get the same 401; another account's call is the 404 of an unknown
one. Our own failure is a retryable 503, never a 500.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from callbridge.core.accounts import Account
from callbridge.edge.router import Response, Router
from callbridge.features import console
from callbridge.features.clicktocall import Unauthorized, authorize_api_key, load_account
from callbridge.infra.observability import bind, logger

app = Router()
_JSON = "application/json"
# Never cached by a proxy: the answer is one account's data, read with its key.
_PRIVATE = {"Cache-Control": "private, no-store"}


def _authorized(account_id: str) -> Account:
    account = load_account(account_id)
    authorize_api_key(account, app.current_event.headers.get("authorization"))
    bind(account=account.id)
    return account


def _ok(body: dict[str, Any], status: int = 200) -> Response[Any]:
    return Response(status, _JSON, body, headers=_PRIVATE)


@app.get("/v1/<account>/health")
def health(account: str) -> Response[Any]:
    return _ok(console.account_health(_authorized(account)))


@app.get("/v1/<account>/users")
def users(account: str) -> Response[Any]:
    return _ok(console.account_users(_authorized(account)))


@app.get("/v1/<account>/settings")
def settings(account: str) -> Response[Any]:
    return _ok(console.account_settings(_authorized(account)))


@app.get("/v1/<account>/calls/<callid>/redeliver/<crm>")
def redelivery_plan(account: str, callid: str, crm: str) -> Response[Any]:
    allowed = _authorized(account)
    call_id = unquote(callid)  # the route matches the raw (still percent-encoded) path
    bind(call_id=call_id)
    return _ok(console.plan(allowed, call_id, unquote(crm)).as_dict())


@app.post("/v1/<account>/calls/<callid>/redeliver/<crm>")
def redeliver(account: str, callid: str, crm: str) -> Response[Any]:
    allowed = _authorized(account)
    call_id = unquote(callid)
    bind(call_id=call_id)
    done = console.redeliver(allowed, call_id, unquote(crm))
    # 202: queued for the worker, whose result the call's deliveries show; 200: nothing to do.
    return _ok(done.as_dict(), 202 if done.result == "queued" else 200)


@app.exception_handler(Unauthorized)
def refused(error: Unauthorized) -> Response[Any]:
    # The same answer for an unknown account, a missing and a wrong key.
    return Response(401, _JSON, {"error": "Invalid credentials"}, headers={"WWW-Authenticate": "Bearer"})


@app.exception_handler(console.NotFound)
def not_there(error: console.NotFound) -> Response[Any]:
    return Response(404, _JSON, {"error": str(error)})


@app.exception_handler(Exception)
def failed(error: Exception) -> Response[Any]:
    logger().exception("the console API failed")
    return Response(503, _JSON, {"error": "Temporarily unavailable"})


@app.not_found
def not_found(error: Exception) -> Response[Any]:
    return Response(404, _JSON, {"error": "Not found"})


def resolve(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
