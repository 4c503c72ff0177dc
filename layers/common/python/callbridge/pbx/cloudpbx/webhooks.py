"""The Cloud PBX webhooks (docs/cloudpbx.md), served by edge/webhooks.py: the single address, where
the body's `cmd` says which command it is, and the per-command addresses. Every command presents
`crm_token` in a form or JSON body. A wrong token gets 401 before any 400, with the fixed bodies the
PBX expects; an unknown command gets 200, so that the PBX does not send it again for ever.

Imported on the contact path: only protocol.py at import; the commands that write calls
(commands.py: pydantic, the logger) load when one of them arrives (bench/benchmark.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from callbridge.core.accounts import Account
from callbridge.core.webhooks import CallerLookup, PbxWebhooks, Webhook, WebhookAnswer, WebhookRequest, WebhookRoute
from callbridge.pbx.cloudpbx.protocol import KIND, decode_body, invalid_parameters, parse_contact

CONTACT = "contact"
COMMANDS = ("history", "event", CONTACT, "rating")
_COMMAND_NAME = re.compile(r"^[A-Za-z][A-Za-z_]{0,31}$")


def read(request: WebhookRequest) -> Webhook:
    fields = decode_body(request.body, request.is_base64, request.headers.get("content-type", ""))
    # The route's command, or at the single address the body's: it decides the fast path and what
    # our failure answers (a history whose link merely contains "contact" must still be retried).
    name = request.route.name or fields.get("cmd", "").strip()
    return Webhook(name=name, credential=fields.get("crm_token", ""), fields=fields, request=request)


def handle(account: Account, webhook: Webhook) -> WebhookAnswer | CallerLookup:
    cmd = webhook.fields.get("cmd", "").strip()
    fixed = webhook.request.route.name
    if fixed:
        if cmd and cmd != fixed:
            raise invalid_parameters()
        cmd = fixed
    if not cmd:
        raise invalid_parameters()
    if cmd == CONTACT:
        return CallerLookup(parse_contact(webhook.fields).phone)
    if cmd in COMMANDS:
        # history/event/rating write the call; their modules (pydantic, logger) load only here.
        from callbridge.pbx.cloudpbx.commands import dispatch

        return WebhookAnswer(*dispatch(account, cmd, webhook.fields))
    from callbridge.infra.observability import logger

    # Its name is logged only when it looks like a command name: a body field may carry anything,
    # a secret included.
    shown = cmd if _COMMAND_NAME.match(cmd) else "<not a command name>"
    logger().warning("unknown Cloud PBX command ignored", extra={"account": account.id, "cmd": shown})
    return WebhookAnswer(200)


def caller_phone(webhook: Webhook) -> str | None:
    """The `phone` a contact command's CallerLookup carries (parse_contact), unchecked: `handle`
    still refuses what it refuses."""
    return webhook.fields.get("phone")


def caller_answer(found: Mapping[str, str]) -> WebhookAnswer:
    """`contact_name` and `responsible`, each only when known: `{}` lets the PBX route by its own rules."""
    return WebhookAnswer(200, dict(found))


WEBHOOKS = PbxWebhooks(
    kind=KIND,
    title="Cloud PBX",
    routes=(
        WebhookRoute("POST", "", ""),  # the single address: the body's cmd
        WebhookRoute("POST", "history", "history"),
        WebhookRoute("POST", "event", "event"),
        WebhookRoute("POST", CONTACT, CONTACT),
    ),
    read=read,
    refused=WebhookAnswer(401, {"error": "Invalid token"}),
    handle=handle,
    lookups=frozenset({CONTACT}),
    caller_answer=caller_answer,
    caller_phone=caller_phone,
)
