"""SQS worker: live call cards (callbridge.features.delivery.cards), apart from the calls.

A card is useful for seconds: stale ones are dropped, the rest sent concurrently, and no message is
ever handed back for a retry."""

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from callbridge.features.delivery.cards import show_messages
from callbridge.infra.observability import invocation

metrics = Metrics(namespace="CallBridge", service="callbridge")


@invocation
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = show_messages(str(r.get("body") or "") for r in event.get("Records") or [])
    # Only what happened: a line of zeros per invocation was half the log bytes of a call, and the
    # alarm on these (DeliveriesParked) treats a missing value as nothing parked.
    for name, value in report.metrics().items():
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return {"batchItemFailures": []}
