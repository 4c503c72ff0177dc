"""GET /v1/{account}/retailcrm/user-status - retailCRM's changeUserStatusUrl (specs/retailcrm.md):
`clientId`, `code`, `userId`, `status` ∈ free | busy | dinner | break. The contact path routes a
call to a manager only while the last status stored here is `free` (callbridge.features.routing).

retailCRM ignores our answer; it is still exact for people: 200 stored, 401 wrong clientId, 400 bad
status, 404 no PBX user mapped to that code/userId.
"""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from callbridge.features.clicktocall import INVALID_CLIENT_ID, UnknownUser, authorize_retailcrm, load_account
from callbridge.features.clicktocall import resolve_retailcrm_user as resolve
from callbridge.features.clicktocall.web import JSON, install_error_answers
from callbridge.features.routing import STATUSES, store_status
from callbridge.infra.observability import bind, logger

app = APIGatewayHttpResolver()
_JSON = JSON


@app.get("/v1/<account>/retailcrm/user-status")
def user_status(account: str) -> Response[Any]:
    event = app.current_event
    bind(account=account)
    found = load_account(account, INVALID_CLIENT_ID)
    authorize_retailcrm(found, event.get_query_string_value("clientId", "") or "")
    status = (event.get_query_string_value("status", "") or "").strip().lower()
    if status not in STATUSES:
        return Response(400, _JSON, {"error": f"status must be one of {', '.join(STATUSES)}"})
    code, user_id = event.get_query_string_value("code"), event.get_query_string_value("userId")
    user = resolve(found, code, user_id)
    if user is None:
        raise UnknownUser("No PBX user is mapped to this CRM user")
    store_status(found.id, user, status, user_id=user_id, code=code)
    logger().info("manager status stored", extra={"pbx_user": user["pbx_user"], "status": status})
    return Response(200, _JSON, {"user": user["pbx_user"], "status": status})


install_error_answers(app, "storing a manager status failed")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
