"""Scheduled: deliver every pending call of batch-mode CRMs, and realtime ones the queue left behind
(callbridge.features.delivery.engine.drain). An event with `accounts` (a list) limits the run to those; the
`account` of a scheduled event is the AWS account, not ours."""

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from callbridge.features.delivery.engine import drain
from callbridge.infra.observability import invocation

metrics = Metrics(namespace="CallBridge", service="callbridge")


@invocation
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    named = event.get("accounts") if isinstance(event, dict) else None
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    report = drain(accounts=[str(a) for a in named] if isinstance(named, list) else None, time_left_ms=remaining)
    for name, value in report.metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    return report.as_dict()
