"""A CRM's report of a manager's status, e.g. retailCRM's changeUserStatusUrl
(callbridge.edge.clicktocall). The contact path routes to a manager only while it is `free`."""

from typing import Any

from callbridge.edge.clicktocall import user_status_app
from callbridge.infra.observability import invocation

app = user_status_app()


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
