"""SQS worker: records a call nobody answered as missed once all its phones stopped ringing
(callbridge.features.settle)."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from callbridge.features.settle import handle_message
from callbridge.infra.observability import invocation


def _settle(record: SQSRecord) -> None:
    handle_message(record.body)


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # A processor per invocation: it keeps per-batch state, and the local runtime may run two batches
    # at once in one process.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(event=event, record_handler=_settle, processor=processor, context=context))
