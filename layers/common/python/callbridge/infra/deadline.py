"""A webhook's AWS calls end before its Lambda timeout.

A PBX can read a 503 and sends the webhook again later; it cannot read a Lambda timeout (API
Gateway answers it for us, and the PBX may take it for anything). DynamoDB throttling used to make
a webhook run 4-13 s - botocore sleeps between retries, and a slow answer was waited for up to the
client's read timeout - past the functions' 10 s Timeout (template.yaml, Globals).

So a webhook handler runs `within_timeout`: its invocation's remaining time (the Lambda context's
get_remaining_time_in_millis) less MARGIN_SECONDS is a deadline for every AWS call it makes
(aws.py registers `bound` on each client). Before each attempt the deadline is checked and the
attempt's read timeout is cut to what is left; a retry whose back-off could outlast it is not
slept for. Either way DeadlineExceeded is raised, which the webhook answers with its documented
retryable 503. Nothing is answered 2xx that was not stored, and the PBX's retry of a webhook
answered 503 changes nothing already stored (store/calls.py writes each source record once).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

# Left for answering: the handler's own work after its last AWS call, and a connect that the
# per-attempt read timeout does not cover.
MARGIN_SECONDS = 1.0
# An attempt that would have less than this cannot get DynamoDB's answer back: not started.
MIN_ATTEMPT_SECONDS = 0.05
# botocore standard mode's longest back-off before retry n (1-based): rand(0, 1) * min(2 ** (n - 1), 20) s
# for a throttling error, less for any other (botocore.retries.standard.ExponentialBackoff).
_MAX_BACKOFF_SECONDS = 20.0

_deadline: ContextVar[float | None] = ContextVar("callbridge_deadline", default=None)

_P = ParamSpec("_P")
_R = TypeVar("_R")


class DeadlineExceeded(Exception):
    """An AWS call would end after the invocation's deadline; the webhook answers 503."""


def remaining() -> float | None:
    """Seconds left before the deadline (negative once passed); None outside `within_timeout`."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


@contextmanager
def deadline_in(seconds: float) -> Iterator[None]:
    """AWS calls made in this block end within `seconds` from now (or raise DeadlineExceeded)."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def within_timeout(handler: Callable[_P, _R]) -> Callable[_P, _R]:
    """A Lambda handler `(event, context)` whose AWS calls end MARGIN_SECONDS before its timeout.
    A context without get_remaining_time_in_millis (a test calling the handler with None) sets no
    deadline."""

    @functools.wraps(handler)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        clock = getattr(args[1] if len(args) > 1 else kwargs.get("context"), "get_remaining_time_in_millis", None)
        if clock is None:
            return handler(*args, **kwargs)
        with deadline_in(int(clock()) / 1000 - MARGIN_SECONDS):
            return handler(*args, **kwargs)

    return wrapper


def bound(client: Any) -> Any:
    """`client` with the deadline applied to its calls (botocore events: before each attempt and
    before each retry's back-off)."""
    client.meta.events.register_first("before-send", _before_attempt)
    client.meta.events.register_first("needs-retry", _before_retry)
    return client


def _before_attempt(request: Any, **_: Any) -> None:
    left = remaining()
    if left is None:
        return
    if left < MIN_ATTEMPT_SECONDS:
        raise DeadlineExceeded(f"{left:.2f} s left before the invocation's deadline")
    # botocore honours a per-request read timeout in the request context (httpsession.py,
    # _get_request_timeout); one that does not keeps the client's own, and the back-off check below
    # still holds.
    context = getattr(request, "context", None)
    if isinstance(context, dict):
        configured = context.get("client_config")
        own = getattr(configured, "read_timeout", None)
        context["read_timeout"] = min(left, own) if isinstance(own, int | float) else left


def _before_retry(attempts: int, **kwargs: Any) -> None:
    """Runs before botocore's own retry handler: when the call failed in a way that handler would
    retry, and its back-off could end past the deadline, the call ends here instead."""
    left = remaining()
    if left is None:
        return
    longest = min(2.0 ** (attempts - 1), _MAX_BACKOFF_SECONDS)
    if left >= longest + MIN_ATTEMPT_SECONDS:
        return
    if _retryable(attempts, kwargs):
        raise DeadlineExceeded(f"{left:.2f} s left, a retry may wait {longest:.2f} s")


def _retryable(attempts: int, kwargs: dict[str, Any]) -> bool:
    """What botocore's standard mode retries (throttling, transient errors, timeouts), regardless of
    the attempts left: an error it would not retry reaches the caller as it is."""
    from botocore.retries.standard import RetryEventAdapter, StandardRetryConditions

    context = RetryEventAdapter().create_retry_context(attempts=attempts, **kwargs)
    return bool(StandardRetryConditions(max_attempts=attempts + 1).is_retryable(context))
