"""Structured logs with Powertools' logger, created on first use, and metrics as the EMF lines
Powertools would write, written by hand: every webhook imports this module but logs only when
something goes wrong, so a cold start must not pay Powertools' import to bind a key or count a call.

Metrics (namespace CallBridge, dimension service=callbridge plus the ones named):
- CallsIngested {Source, Outcome, Reason}: a call became final (handoff.call_stored); Reason is why an
  unanswered call was missed (core/terms.py MissedReason), `answered` otherwise.
- ContactLatency {Served} in ms: the contact answer, from the request's arrival; Served is where
  it came from: directory (our contacts), cache / crm / timeout / error (routing to retailCRM),
  none (a number we could not read).
- RecordingsFetched / RecordingsFailed: the recording worker stored a file / gave up on it.
- DeliveriesSent / DeliveriesFailed / DeliveriesParked {Crm}: the delivery worker. The
  ParkedDeliveriesAlarm watches DeliveriesParked with the service dimension only, so emit it once
  without Crm as well (a CloudWatch metric is identified by its exact dimension set).
"""

from __future__ import annotations

import contextvars
import functools
import json
import sys
import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

if TYPE_CHECKING:
    from aws_lambda_powertools import Logger

NAMESPACE = "CallBridge"
SERVICE = "callbridge"
# The CloudWatch units our metrics use (a name CloudWatch does not know would be refused there).
Unit = Literal["Count", "Milliseconds"]

# Field names whose values are secrets wherever they appear (PBX and CRM payloads alike).
SECRET_FIELDS = frozenset({"crm_token", "token", "apikey", "api_key", "password", "secret"})


# The keys bound to this request's log lines, kept here rather than only in the logger: a webhook
# binds its account on every request but logs only when something goes wrong, and creating the
# logger to hold the keys would import Powertools on that cold start (bench/benchmark.py). A
# contextvar, like Powertools' own thread-safe keys: the local runtime serves requests on several
# threads of one process, and `in_context` hands a copy to a pool thread.
_keys: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("callbridge_log_keys", default=None)


@cache
def _powertools_logger() -> Logger:
    from aws_lambda_powertools import Logger

    return Logger(service="callbridge")


def logger() -> Logger:
    """The logger, carrying the keys bound so far in this context (also those bound before it was
    first created)."""
    log = _powertools_logger()
    _apply(log, _keys.get() or {})
    return log


def _apply(log: Logger, keys: dict[str, Any]) -> None:
    log.thread_safe_clear_keys()
    if keys:
        log.thread_safe_append_keys(**keys)


def _created() -> Logger | None:
    return _powertools_logger() if _powertools_logger.cache_info().currsize else None


def redact(fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of a payload safe to store and log: secret fields are dropped, not masked, so that
    not even their length is kept."""
    return {k: v for k, v in fields.items() if k.lower() not in SECRET_FIELDS}


_P = ParamSpec("_P")
_R = TypeVar("_R")


def bind(**keys: Any) -> None:
    """Attach keys (account, call_id) to every following log line of this invocation, replacing the
    ones bound before. They live in a contextvar (and, once the logger exists, in Powertools'
    thread-safe keys), not in the logger's shared format: the local runtime serves requests on
    several threads of one process, and a key appended to the shared format would tag another
    thread's lines. What `invocation` clears."""
    _set_keys({k: v for k, v in keys.items() if v is not None})


def bind_more(**keys: Any) -> None:
    """Attach more keys to the log lines of this invocation, keeping the ones bound before: the
    edge binds the account, the PBX package the call it names."""
    _set_keys({**(_keys.get() or {}), **{k: v for k, v in keys.items() if v is not None}})


def _set_keys(keys: dict[str, Any]) -> None:
    _keys.set(keys)
    log = _created()
    if log is not None:  # a reference to the logger taken before this bind logs with the new keys too
        _apply(log, keys)


def reset_log_context() -> None:
    """Forget every key bound so far. A warm Lambda keeps the logger (and the thread's context)
    between invocations, so a request that fails before it binds its own account would otherwise
    log under the previous request's account and call id. Powertools is not imported for this while
    the logger was never created: the contact path must not pay for it (see `contact_latency`)."""
    _keys.set({})
    log = _created()
    if log is not None:
        log.clear_state()
        log.thread_safe_clear_keys()


def invocation(handler: Callable[_P, _R]) -> Callable[_P, _R]:
    """Every Lambda handler (functions/*.py) is wrapped in this, the one place the log context of a
    request starts empty and is emptied again when it ends; tests/unit/test_observability.py checks
    that no handler goes without it."""

    @functools.wraps(handler)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        reset_log_context()
        try:
            return handler(*args, **kwargs)
        finally:
            reset_log_context()

    wrapper.__callbridge_invocation__ = True  # type: ignore[attr-defined]
    return wrapper


def in_context(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """`func` bound to a copy of the caller's context, for a pool thread: its log lines carry the
    caller's keys (a pool thread does not inherit them), and whatever it binds stays in the copy
    instead of tagging the next job the thread runs."""
    context = contextvars.copy_context()

    @functools.wraps(func)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return context.copy().run(func, *args, **kwargs)

    return run


def metric(name: str, value: float = 1, unit: Unit = "Count", **dimensions: str) -> None:
    """One data point, written at once as its own EMF log line (what Powertools' single_metric
    writes), so that a crash later in the invocation cannot lose it and no flush decorator is needed
    on the handlers. Written by hand: Powertools Metrics costs a webhook's cold start about 8 ms (4%
    of the floor it is benchmarked against; bench/benchmark.py) to print one JSON line.
    tests/unit/test_observability.py checks it against what Powertools writes."""
    dimensions = {"service": SERVICE, **dimensions}
    record = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit}],
                }
            ],
        },
        **dimensions,
        name: [float(value)],
    }
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")


def contact_latency(milliseconds: float, served: str) -> None:
    """ContactLatency {Served}, the contact answer's time from the request's arrival."""
    metric("ContactLatency", round(milliseconds, 3), "Milliseconds", Served=served)
