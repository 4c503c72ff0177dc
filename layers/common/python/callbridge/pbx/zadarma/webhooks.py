"""The Zadarma notifications (docs/zadarma.md), served by edge/webhooks.py:

    POST /v1/{account}/zadarma/{secret}   every call notification (the body's `event`)
    GET  /v1/{account}/zadarma/{secret}   the cabinet's check of the address (`zd_echo`)

Zadarma sends no credential but a signature made with the account's API secret, so the address
carries a random secret of its own (`{secret}`, the account's webhook_secret, checked by the edge
against its digest: a wrong one and an unknown account get the same 404), and then every
notification's `Signature` is checked with the API secret: a wrong or missing one gets 401 and
nothing is stored. A notification is stored before it is answered; our store's failure is a 503.

`NOTIFY_START` is answered with the caller's name and the responsible manager's extension
(features/callers.py, within the contact budget); `{}` lets Zadarma's own scenario go on.

Imported on the call-start path: only protocol.py at import; the modules that write calls load in
`handle` (bench/benchmark.py measures the contact path).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from urllib.parse import parse_qsl

from callbridge.core.accounts import Account
from callbridge.core.webhooks import (
    CallerLookup,
    PbxWebhooks,
    Webhook,
    WebhookAnswer,
    WebhookRefused,
    WebhookRequest,
    WebhookRoute,
)
from callbridge.pbx.zadarma.protocol import ECHO, EVENTS, KIND, START, call_id_ok, echo_ok, signature_ok

NOTIFICATIONS = "notifications"  # the POST route's name: the body's `event` says which one
OK = WebhookAnswer(200, {})
UNAVAILABLE = WebhookAnswer(503, {"error": "Temporarily unavailable"})
# How long Zadarma rings the manager we route to before the call goes back to its menu.
RETURN_TIMEOUT_S = 20
_MAX_BODY = 16 * 1024  # a notification is a few hundred bytes


def _bad(reason: str) -> WebhookRefused:
    return WebhookRefused(WebhookAnswer(400, {"error": reason}))


def _form(request: WebhookRequest) -> dict[str, str]:
    raw = request.body or ""
    if len(raw) > _MAX_BODY * 2:
        raise _bad("body too large")
    try:
        text = base64.b64decode(raw).decode() if request.is_base64 else raw
    except (binascii.Error, UnicodeDecodeError):
        raise _bad("body is not form data") from None
    pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=64)
    return {k: v for k, v in pairs}


def read(request: WebhookRequest) -> Webhook:
    secret = str(request.path_parameters.get("secret", ""))
    # Both routes share the path (the edge picks the first): the cabinet's check is the request
    # with no body and a zd_echo in the query, whatever its method.
    if not request.body and ECHO in request.query:
        return Webhook(name=ECHO, credential=secret, fields={ECHO: request.query.get(ECHO, "")}, request=request)
    try:
        fields = _form(request)
    except ValueError:  # more fields than any notification has
        raise _bad("body is not form data") from None
    return Webhook(name=fields.get("event", "").strip(), credential=secret, fields=fields, request=request)


def _api_secret(account: Account, fast: bool) -> str:
    from callbridge.infra import secrets

    found = secrets.account_secrets(account.id, under=secrets.PBX, fast=fast, version=account.version)
    return found.get(secrets.pbx_secret_name("api_secret"), "")


def handle(account: Account, webhook: Webhook) -> WebhookAnswer | CallerLookup:
    event, fields = webhook.name, webhook.fields
    if event == ECHO:
        value = fields.get(ECHO, "")
        if not echo_ok(value):
            raise _bad("zd_echo is missing or malformed")
        return WebhookAnswer(200, text=value)
    if not event:
        raise _bad("event is missing")
    if event not in EVENTS:
        # NOTIFY_IVR, SMS, speech recognition…: not ours to store, and answered so that the PBX
        # does not send them again. Logged by name only when it looks like one.
        from callbridge.infra.observability import logger

        shown = event if event.replace("_", "").isalnum() and len(event) <= 32 else "<not an event name>"
        logger().warning("zadarma notification ignored", extra={"event": shown})
        return OK
    if not signature_ok(
        _api_secret(account, fast=event == START), event, fields, webhook.request.headers.get("signature", "")
    ):
        raise WebhookRefused(WebhookAnswer(401, {"error": "Invalid signature"}))
    if not call_id_ok(fields.get("pbx_call_id", "")):
        raise _bad("pbx_call_id is missing or malformed")
    from callbridge.pbx.zadarma.ingest import record_notification

    if event != START:
        record_notification(account, event, fields)
        return OK
    try:
        record_notification(account, event, fields)
    except Exception:
        # Stored before answered: a start we could not store gets our 503, not a caller answer
        # (Zadarma's own scenario goes on either way; its end and the statistics still record it).
        from callbridge.infra.observability import logger

        logger().exception("zadarma call start not stored")
        raise WebhookRefused(UNAVAILABLE) from None
    return CallerLookup(fields.get("caller_id", ""))


def caller_answer(found: Mapping[str, str]) -> WebhookAnswer:
    """The caller's name, and a route to the responsible manager's extension (the account maps
    Zadarma users by extension); `{}`: Zadarma's own scenario goes on."""
    answer: dict[str, str | int] = {}
    name = " ".join(str(found.get("contact_name") or "").split())[:64]
    if name:
        answer["caller_name"] = name
    responsible = str(found.get("responsible") or "").strip()
    if responsible.isascii() and responsible.isdigit() and 3 <= len(responsible) <= 5:
        answer["redirect"] = responsible
        answer["return_timeout"] = RETURN_TIMEOUT_S
    return WebhookAnswer(200, answer)


WEBHOOKS = PbxWebhooks(
    kind=KIND,
    title="Zadarma",
    routes=(
        WebhookRoute("POST", "{secret}", NOTIFICATIONS),
        WebhookRoute("GET", "{secret}", ECHO),
    ),
    read=read,
    refused=WebhookAnswer(404, {"error": "Not found"}),
    handle=handle,
    lookups=frozenset({START}),
    caller_answer=caller_answer,
)
