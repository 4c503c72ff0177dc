"""SQS worker: records a call nobody answered as missed once all its phones stopped ringing."""

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from callbridge.core.record import settle_call
from callbridge.infra.observability import bind, invocation, logger


def _settle(record: SQSRecord) -> None:
    message = json.loads(record.body)
    bind(account=message.get("account"), call_id=message.get("call_id"))
    result = settle_call(str(message["account"]), str(message["call_id"]))
    logger().info(
        "settled",
        extra={"account": message["account"], "call_id": message["call_id"], "result": result.status},
    )


@invocation
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # A processor per invocation: it keeps per-batch state, and the local runtime may run two batches
    # at once in one process.
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(event=event, record_handler=_settle, processor=processor, context=context))
