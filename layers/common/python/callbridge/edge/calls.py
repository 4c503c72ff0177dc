"""The call history API as API Gateway (HTTP API) sees it: routing, the query string and the one
mapping of refusals and failures to statuses. What is read, and how it pages, is
callbridge.features.calls's (the CLI's `calls list|show` read through it too).

GET /v1/{account}/calls?from=&to=&direction=&outcome=&missed_reason=&phone=&user=&limit=&cursor=
GET /v1/{account}/calls/{callid}

Both take `Authorization: Bearer <account API key>` (the account file's api_keys). An unknown
account and a wrong key get the same 401; another account's call is the 404 of an unknown call.
A bad filter or cursor is 400; our own failure a retryable 503 — never a 500.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from callbridge.core.accounts import Account
from callbridge.edge.router import Response, Router
from callbridge.features import calls
from callbridge.features.calls import BadQuery, CallFilter
from callbridge.features.clicktocall import Unauthorized, authorize_api_key, load_account
from callbridge.infra.observability import bind, logger
from callbridge.infra.settings import get_settings

app = Router()
_JSON = "application/json"
# Never cached by a proxy: the answer is one account's data, read with its key.
_PRIVATE = {"Cache-Control": "private, no-store"}


def _authorized(account_id: str) -> Account:
    account = load_account(account_id)
    authorize_api_key(account, app.current_event.headers.get("authorization"))
    bind(account=account.id)
    return account


def _own_base_url() -> str:
    """The API's own address, as API Gateway received this request: where the playback link points
    when PublicBaseUrl is not set. Taken from the request because this function cannot be told its
    API's URL by the template: the API's routes name the function, so an `API_URL` naming the API
    would make the two depend on each other, a cycle CloudFormation refuses (template.yaml, CallHistoryFunction)."""
    request = app.current_event
    if not request.domain_name:
        return ""
    stage = request.stage
    return f"https://{request.domain_name}" + ("" if not stage or stage == "$default" else f"/{stage}")


@app.get("/v1/<account>/calls")
def list_calls(account: str) -> Response[Any]:
    allowed = _authorized(account)
    event = app.current_event
    where = CallFilter.parse(
        allowed,
        {
            "from": event.query("from"),
            "to": event.query("to"),
            "direction": event.query("direction"),
            "outcome": event.query("outcome"),
            "phone": event.query("phone"),
            "user": event.query("user"),
            "missed_reason": event.query("missed_reason"),
        },
    )
    limit = calls.parse_limit(event.query("limit"))
    page = calls.list_calls(allowed, where, limit=limit, cursor=event.query("cursor") or None)
    return Response(200, _JSON, page.as_dict(), headers=_PRIVATE)


@app.get("/v1/<account>/calls/<callid>")
def show_call(account: str, callid: str) -> Response[Any]:
    allowed = _authorized(account)
    call_id = unquote(callid)  # the route matches the raw (still percent-encoded) path
    bind(call_id=call_id)
    detail = calls.call_detail(allowed, call_id, base_url=get_settings().public_base_url or _own_base_url())
    if detail is None:
        return Response(404, _JSON, {"error": "Call not found"})
    return Response(200, _JSON, detail.as_dict(), headers=_PRIVATE)


@app.exception_handler(Unauthorized)
def refused(error: Unauthorized) -> Response[Any]:
    # The same answer for an unknown account, a missing and a wrong key.
    return Response(401, _JSON, {"error": "Invalid credentials"}, headers={"WWW-Authenticate": "Bearer"})


@app.exception_handler(BadQuery)
def bad_query(error: BadQuery) -> Response[Any]:
    return Response(400, _JSON, {"error": str(error)})


@app.exception_handler(Exception)
def failed(error: Exception) -> Response[Any]:
    logger().exception("reading the call history failed")
    return Response(503, _JSON, {"error": "Temporarily unavailable"})


@app.not_found
def not_found(error: Exception) -> Response[Any]:
    return Response(404, _JSON, {"error": "Not found"})


def resolve(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
