"""The telediscount webhooks over HTTP (docs/telediscount.md, "Webhooks"):

    GET /v1/{account}/telediscount/{secret}/incoming   start of an incoming call
    GET /v1/{account}/telediscount/{secret}/finished   call completed

The PBX sends no credentials, so the URL is the credential: `{secret}` is the account's
webhook_secret, checked against its digest on the account item in constant time. An unknown account
and a wrong secret get the same 404, so nobody can probe which accounts exist. The path (and so the
secret) is never logged: log lines name the account and the event only.

Answers: 200 `OK` (also for a repeated webhook), 400 with a reason for a record we cannot identify
(no api_call_id), 404 for a wrong address, 503 when storing failed (the PBX may try again).
"""

from __future__ import annotations

import json
from typing import Any

from callbridge.core.accounts import Account, UnknownAccount, authenticate
from callbridge.infra.observability import bind, logger
from callbridge.pbx.telediscount.protocol import SOURCE, BadRecord

EVENTS = ("incoming", "finished")
_JSON = {"content-type": "application/json"}


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "headers": _JSON, "body": json.dumps(body)}


def _event_name(event: dict[str, Any]) -> str:
    path = str(event.get("rawPath") or (event.get("requestContext") or {}).get("http", {}).get("path") or "")
    return path.rstrip("/").rsplit("/", 1)[-1]


def handle(event: dict[str, Any]) -> dict[str, Any]:
    params = event.get("pathParameters") or {}
    account_id, secret = str(params.get("account", "")), str(params.get("secret", ""))
    kind = _event_name(event)
    if kind not in EVENTS:
        return _response(404, {"error": "Not found"})
    try:
        account = _authenticate(account_id, secret)
    except UnknownAccount:
        return _response(404, {"error": "Not found"})
    fields = {str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
    bind(account=account.id, call_id=fields.get("api_call_id"), telediscount_event=kind)
    from callbridge.pbx.telediscount.ingest import close_card, record_finished, record_incoming

    try:
        # A call card only for a webhook applied for the first time: a PBX retry opens no second one.
        if kind == "incoming":
            record_incoming(account, fields)
        elif record_finished(account, fields):
            close_card(account, fields)
    except BadRecord as error:
        logger().warning("telediscount webhook rejected", extra={"reason": str(error)})
        return _response(400, {"error": str(error)})
    except Exception:
        logger().exception("telediscount webhook failed")
        return _response(503, {"error": "Temporarily unavailable"})
    return _response(200, {"result": "OK"})


def _authenticate(account_id: str, secret: str) -> Account:
    if not secret:
        raise UnknownAccount(account_id)
    account = authenticate(account_id, secret)
    if account.pbx_kind != SOURCE:
        raise UnknownAccount(account_id)
    return account
