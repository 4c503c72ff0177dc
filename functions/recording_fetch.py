"""SQS worker: downloads a call's recording into the recordings bucket (callbridge.features.recordings.worker).

A record that should be tried again fails (ReportBatchItemFailures) after the core has set its
visibility to the backoff delay; every other record succeeds."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from callbridge.features.recordings.worker import handle_message
from callbridge.infra.observability import invocation


def _fetch(record: SQSRecord) -> None:
    attempt = int(record.attributes.approximate_receive_count or "1")
    handle_message(record.body, attempt=attempt, receipt_handle=record.receipt_handle)


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # A processor per invocation: its state is per batch, and the local runtime may run two batches
    # at once in one process (its poller thread and a drain). A batch whose every record failed is
    # reported as such rather than raised: the same retry, clearer logs.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(event=event, record_handler=_fetch, processor=processor, context=context))
