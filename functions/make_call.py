"""Click-to-call (callbridge.features.clicktocall):

- GET /v1/{account}/retailcrm/make-call - retailCRM's makeCallUrl (specs/retailcrm.md): `clientId`,
  `code` and/or `userId`, `phone`, optional `externalPhone`. 200 only when the PBX accepted the call;
  retailCRM shows any other status to the manager as a failed call.
- POST /v1/{account}/calls - the same for any CRM or script: JSON `{user | extension, phone, clid?}`,
  `Authorization: Bearer <account API key>`.

Every refusal is a JSON `{"error": …}` with its status, mapped in one place (`refused`); never a 500.
"""

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from callbridge.features.clicktocall import (
    INVALID_CLIENT_ID,
    authorize_api_key,
    authorize_retailcrm,
    load_account,
    make_call,
    query_phone,
    resolve_api_user,
    resolve_retailcrm_user,
)
from callbridge.features.clicktocall.web import JSON, install_error_answers
from callbridge.infra.observability import bind, logger

app = APIGatewayHttpResolver(enable_validation=True)
_JSON = JSON


class CallRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, min_length=1, max_length=256, description="PBX user")
    extension: str | None = Field(default=None, min_length=1, max_length=32, description="or their extension")
    phone: str = Field(min_length=1, max_length=64, description="Number to call, any format")
    clid: str | None = Field(default=None, max_length=64, description="Caller id to present (Cloud PBX)")

    @model_validator(mode="after")
    def _who(self) -> "CallRequest":
        if not self.user and not self.extension:
            raise ValueError("give user or extension")
        return self


@app.get("/v1/<account>/retailcrm/make-call")
def retailcrm_make_call(account: str) -> Response[Any]:
    event = app.current_event
    bind(account=account)
    found = load_account(account, INVALID_CLIENT_ID)
    authorize_retailcrm(found, event.get_query_string_value("clientId", "") or "")
    phone = query_phone(event.get_query_string_value("phone"))
    if not phone:
        raise BadRequestError("phone is required")
    user = resolve_retailcrm_user(found, event.get_query_string_value("code"), event.get_query_string_value("userId"))
    # The shop's external number (sent for entities of a shop that has one) is the caller id to show.
    external = query_phone(event.get_query_string_value("externalPhone")) or None
    placed = make_call(found, user, phone, clid=external)
    logger().info("click-to-call placed", extra={"pbx_user": placed.pbx_user, "source": "retailcrm"})
    return Response(200, _JSON, placed.as_dict())


@app.post("/v1/<account>/calls")
def api_make_call(account: str, request: CallRequest) -> Response[Any]:
    bind(account=account)
    found = load_account(account)
    authorize_api_key(found, app.current_event.headers.get("authorization"))
    placed = make_call(
        found, resolve_api_user(found, request.user, request.extension), request.phone, clid=request.clid
    )
    logger().info("click-to-call placed", extra={"pbx_user": placed.pbx_user, "source": "api"})
    return Response(200, _JSON, placed.as_dict())


@app.exception_handler(BadRequestError)  # type: ignore[untyped-decorator]
def bad_request(error: BadRequestError) -> Response[Any]:
    return Response(400, _JSON, {"error": error.msg})


@app.exception_handler(RequestValidationError)  # type: ignore[untyped-decorator]
def invalid(error: RequestValidationError) -> Response[Any]:
    problems = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in error.errors()]
    return Response(422, _JSON, {"error": "Invalid request", "details": problems})


install_error_answers(app, "click-to-call failed")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
