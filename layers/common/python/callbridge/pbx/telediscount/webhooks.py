"""The telediscount webhooks (docs/telediscount.md, "Webhooks"), served by edge/webhooks.py:

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

from callbridge.core.accounts import Account
from callbridge.core.webhooks import PbxWebhooks, Webhook, WebhookAnswer, WebhookRefused, WebhookRequest, WebhookRoute
from callbridge.infra.observability import bind_more, logger
from callbridge.pbx.telediscount.protocol import SOURCE, BadRecord

INCOMING, FINISHED = "incoming", "finished"


def read(request: WebhookRequest) -> Webhook:
    fields = {str(k): str(v) for k, v in request.query.items()}
    secret = str(request.path_parameters.get("secret", ""))
    return Webhook(name=request.route.name, credential=secret, fields=fields, request=request)


def handle(account: Account, webhook: Webhook) -> WebhookAnswer:
    fields = webhook.fields
    bind_more(call_id=fields.get("api_call_id"), telediscount_event=webhook.name)
    from callbridge.pbx.telediscount.ingest import close_card, record_finished, record_incoming

    try:
        # A call card only for a webhook applied for the first time: a PBX retry opens no second one.
        if webhook.name == INCOMING:
            record_incoming(account, fields)
        elif record_finished(account, fields):
            close_card(account, fields)
    except BadRecord as error:
        logger().warning("telediscount webhook rejected", extra={"reason": str(error)})
        raise WebhookRefused(WebhookAnswer(400, {"error": str(error)})) from None
    return WebhookAnswer(200, {"result": "OK"})


WEBHOOKS = PbxWebhooks(
    kind=SOURCE,
    title="telediscount",
    routes=(
        WebhookRoute("GET", "{secret}/" + INCOMING, INCOMING),
        WebhookRoute("GET", "{secret}/" + FINISHED, FINISHED),
    ),
    read=read,
    refused=WebhookAnswer(404, {"error": "Not found"}),
    handle=handle,
)
