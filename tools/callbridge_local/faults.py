"""Store faults on request, for tests: while armed, every DynamoDB write the emulated AWS receives
(PutItem, UpdateItem, DeleteItem, BatchWriteItem's items, TransactWriteItems) fails with the chosen
error, as DynamoDB does during an outage or when throttling; reads keep working. Driven by
``POST /_local/faults/dynamodb?error=<Code>`` (arm) and ``?error=`` (disarm) (control.py).

Why in moto, server side: the handlers' own boto3 clients, retries and error handling are what is
under test, so the fault must come over the wire as DynamoDB would send it, not be raised inside
the product's code.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

# The errors a store outage looks like from a client, with DynamoDB's status for each. botocore
# retries the 5xx and the throttling ones itself before the product sees them.
ERRORS: dict[str, int] = {
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "ProvisionedThroughputExceededException": 400,
    "ThrottlingException": 400,
    "ResourceNotFoundException": 400,
}
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")

_lock = threading.Lock()
_armed: str | None = None
_failed = 0
_applied = False


def arm(error: str | None) -> None:
    """Fail every DynamoDB write with `error` (one of ERRORS) from now on; None: stop."""
    global _armed
    if error is not None and error not in ERRORS:
        raise ValueError(f"unknown error {error!r}; one of {', '.join(ERRORS)}")
    with _lock:
        _armed = error


def state() -> dict[str, Any]:
    with _lock:
        return {"dynamodbWrites": _armed, "failedWrites": _failed}


def apply() -> None:
    """Wrap the in-process moto DynamoDB backend's writes (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        setattr(DynamoDBBackend, name, _faulty(getattr(DynamoDBBackend, name)))
    _applied = True


def _faulty(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        global _failed
        with _lock:
            error = _armed
            if error is not None:
                _failed += 1
        if error is not None:
            raise _fault(error)
        return method(*args, **kwargs)

    return wrapper


def _fault(error: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    fault = JsonRESTError(f"com.amazonaws.dynamodb.v20120810#{error}", "injected by callbridge_local (faults.py)")
    fault.code = ERRORS[error]
    return fault
