"""POST /v1/{account}/cloudpbx/history - the Cloud PBX `history` command at its own address."""

from typing import Any

# boto3 first, from the handler itself, as the floor imports it (bench/floor.py). Imported six
# modules deep under ours it cost about a thousand more page faults, 5-8 ms of a cold start of
# ~130 ms (measured on CPython 3.11; the faults grow with the depth of the import). A likely cause:
# CPython allocates its frame stack in chunks and frees one whenever the stack falls back below it.
import boto3  # noqa: F401

from callbridge.edge.webhooks import handle
from callbridge.infra.deadline import within_timeout
from callbridge.infra.observability import invocation


@invocation
@within_timeout
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event)
