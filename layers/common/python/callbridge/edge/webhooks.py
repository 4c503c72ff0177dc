"""Every PBX webhook over HTTP: the routes under /v1/{account}/{kind}/… that a PBX package declares
(its `webhooks` module, core/webhooks.py), found through callbridge.registry by the path segment
after the account. It takes the API Gateway HTTP API (v2) event only to read the route, path and
query parameters, headers and body, and hands plain values to the package; the account is read and
checked once here, for every PBX alike.

Why not Powertools' event handler here: the contact path is latency critical and its cold start is
measured against a bare boto3 handler (bench/benchmark.py) - the resolver's import alone costs about
a third of that floor. The protocols also need what its validation can't express: form or JSON
bodies with the same fields, dispatch on a body field, a credential in the path, and their fixed
refusal bodies. So this module loads only the package the path names, and a package's webhooks
module only its parsing (the modules that write calls load in its `handle`).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from callbridge import registry
from callbridge.core.accounts import Account, UnknownAccount, authenticate, authenticate_caller
from callbridge.core.phones import international_guess
from callbridge.core.webhooks import (
    CallerLookup,
    PbxWebhooks,
    Webhook,
    WebhookAnswer,
    WebhookRefused,
    WebhookRequest,
    WebhookRoute,
)
from callbridge.infra.observability import bind, contact_latency

if TYPE_CHECKING:
    from callbridge.store.accounts import ContactRead

_JSON = {"content-type": "application/json"}
_TEXT = {"content-type": "text/plain; charset=utf-8"}
# Our fault (a store or SSM outage), never the client's: the PBX sends the webhook again later.
UNAVAILABLE = WebhookAnswer(503, {"error": "Temporarily unavailable"})


class NotRouted(LookupError):
    """The template routes a path to this handler that no registered PBX declares: a deployment
    mistake (API Gateway passes only the template's routes), answered as our failure."""


def _response(answer: WebhookAnswer) -> dict[str, Any]:
    if answer.text is not None:
        return {"statusCode": answer.status, "headers": _TEXT, "body": answer.text}
    body = json.dumps(answer.body, ensure_ascii=False) if answer.body is not None else ""
    return {"statusCode": answer.status, "headers": _JSON, "body": body}


def handle(event: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()  # a caller lookup's budget counts from the request's arrival
    try:
        declared, segments = _declared(event)
    except NotRouted:
        from callbridge.infra.observability import logger

        logger().exception("no PBX webhook is declared for this route")
        return _response(UNAVAILABLE)
    route = declared.route(segments)
    if route is None:  # a path the PBX does not have: a wrong address, like a wrong credential
        return _response(declared.refused)
    webhook: Webhook | None = None
    try:
        webhook = declared.read(_request(event, route, started))
        account, directory = _authenticate(declared, webhook)
        if webhook.name not in declared.lookups:
            # Every line of a recorded webhook names its account; a caller lookup logs nothing on
            # success and must not load the logger (its cold start, bench/benchmark.py).
            bind(account=account.id)
        result = declared.handle(account, webhook)
        if isinstance(result, CallerLookup):
            return _response(_caller(declared, account, result, started, directory))
        return _response(result)
    except WebhookRefused as refused:
        return _response(refused.answer)
    except Exception:
        from callbridge.infra.observability import logger

        # Only the webhook's name decides: a caller lookup still gets a valid (empty) answer, so
        # that the ringing phone is answered; anything else 503, so that the PBX sends it again.
        logger().exception(f"{declared.title} webhook failed")
        if (webhook.name if webhook is not None else route.name) in declared.lookups:
            return _response(declared.caller_answer({}))
        return _response(UNAVAILABLE)


def _path(event: dict[str, Any]) -> str:
    """The route's path (`/v1/{account}/cloudpbx`), or the request's when the event has no route key."""
    route_key = str(event.get("routeKey") or "")
    _, _, path = route_key.partition(" ")
    if path.startswith("/"):
        return path
    return str(event.get("rawPath") or (event.get("requestContext") or {}).get("http", {}).get("path") or "")


def _declared(event: dict[str, Any]) -> tuple[PbxWebhooks, list[str]]:
    """The webhooks of the PBX the path names, and the path's segments below its kind."""
    parts = _path(event).strip("/").split("/")
    if len(parts) < 3 or parts[0] != "v1":
        raise NotRouted("not a /v1/{account}/{kind} path")
    try:
        declared = registry.pbx_webhooks(parts[2])
    except registry.UnknownKind:
        declared = None
    if declared is None:
        raise NotRouted(f"no PBX of kind {parts[2][:32]!r} has webhooks")
    return declared, parts[3:]


def _request(event: dict[str, Any], route: WebhookRoute, started: float) -> WebhookRequest:
    headers = event.get("headers") or {}
    return WebhookRequest(
        account_id=str((event.get("pathParameters") or {}).get("account", "")),
        route=route,
        path_parameters={str(k): str(v) for k, v in (event.get("pathParameters") or {}).items()},
        query={str(k): str(v) for k, v in (event.get("queryStringParameters") or {}).items()},
        headers={str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {},
        body=event.get("body"),
        is_base64=bool(event.get("isBase64Encoded")),
        started=started,
    )


def _authenticate(declared: PbxWebhooks, webhook: Webhook) -> tuple[Account, ContactRead | None]:
    """The account, once per request; the package's refusal for an unknown one, a wrong credential
    and another PBX's account alike (nobody can probe which accounts exist). For a caller lookup,
    also the caller's directory entry when the account's read could fetch it alongside
    (core/accounts.py authenticate_caller): a cold start's second round trip saved."""
    if not webhook.credential:
        raise WebhookRefused(declared.refused)
    directory = None
    try:
        if webhook.name in declared.lookups:
            phone = declared.caller_phone(webhook) if declared.caller_phone is not None else None
            account, directory = authenticate_caller(
                webhook.request.account_id, webhook.credential, international_guess(phone) if phone else None
            )
        else:
            account = authenticate(webhook.request.account_id, webhook.credential)
    except UnknownAccount:
        raise WebhookRefused(declared.refused) from None
    if account.pbx_kind != declared.kind:
        raise WebhookRefused(declared.refused)
    return account, directory


def _caller(
    declared: PbxWebhooks,
    account: Account,
    lookup: CallerLookup,
    started: float,
    directory: ContactRead | None,
) -> WebhookAnswer:
    from callbridge.features.callers import lookup as look_up

    found, served = look_up(account, lookup.phone, started, directory)
    contact_latency((time.monotonic() - started) * 1000, served)
    return declared.caller_answer(found)
