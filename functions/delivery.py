"""SQS worker: realtime delivery of final calls and live call cards
(callbridge.features.delivery.engine.deliver_messages).

The messages of a batch are grouped per CRM, so one batch becomes the fewest CRM requests; the
response names only the messages to retry (ReportBatchItemFailures)."""

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from callbridge.features.delivery.engine import deliver_messages
from callbridge.infra.observability import invocation

metrics = Metrics(namespace="CallBridge", service="callbridge")


@invocation
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = [(str(r["messageId"]), str(r.get("body") or "")) for r in event.get("Records") or []]
    report, failed = deliver_messages(records)
    # Only what happened: a line of zeros per invocation was half the log bytes of a call, and the
    # alarm on these (DeliveriesParked) treats a missing value as nothing parked.
    for name, value in report.metrics().items():
        if value:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failed]}
