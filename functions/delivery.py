"""SQS worker: realtime delivery of a final call to one CRM (callbridge.delivery.engine).

A message never fails for a CRM's answer: the delivery item records the outcome and the drain
retries it when due. Only a crash (DynamoDB unreachable…) fails the record, for SQS to redeliver."""

from typing import Any

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from callbridge.delivery.engine import Report, deliver_message

metrics = Metrics(namespace="CallBridge", service="callbridge")


def publish(report: Report) -> None:
    for name, value in report.metrics().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def _deliver(record: SQSRecord) -> None:
    publish(deliver_message(record.body))


@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(event=event, record_handler=_deliver, processor=processor, context=context))
