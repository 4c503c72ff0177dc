"""Metrics: the hand-written EMF lines (metric(), ContactLatency) are what Powertools would write, in
the CallBridge namespace."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from callbridge.infra import observability


def _emf(text: str) -> Any:
    [line] = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    line["_aws"].pop("Timestamp")
    return line


def test_hand_written_contact_latency_equals_powertools_emf(capsys):
    observability.contact_latency(12.5, "directory")
    ours = _emf(capsys.readouterr().out)
    with single_metric(
        name="ContactLatency",
        unit=MetricUnit.Milliseconds,
        value=12.5,
        namespace="CallBridge",
        default_dimensions={"service": "callbridge", "Served": "directory"},
    ):
        pass
    theirs = _emf(capsys.readouterr().out)
    assert ours == theirs


def test_hand_written_metric_equals_powertools_emf(capsys):
    observability.metric("CallsIngested", Source="cloudpbx", Outcome="missed", Reason="busy")
    ours = _emf(capsys.readouterr().out)
    with single_metric(
        name="CallsIngested",
        unit=MetricUnit.Count,
        value=1,
        namespace="CallBridge",
        default_dimensions={"service": "callbridge", "Source": "cloudpbx", "Outcome": "missed", "Reason": "busy"},
    ):
        pass
    theirs = _emf(capsys.readouterr().out)
    assert ours == theirs


def test_metric_writes_one_emf_line_with_its_dimensions(capsys):
    observability.metric("CallsIngested", Source="cloudpbx", Outcome="missed")
    line = _emf(capsys.readouterr().out)
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "CallBridge"
    assert directive["Dimensions"] == [["service", "Source", "Outcome"]]
    assert (line["Source"], line["Outcome"], line["CallsIngested"]) == ("cloudpbx", "missed", [1.0])


def test_every_lambda_handler_starts_with_an_empty_log_context() -> None:
    """The one place a request's log keys are reset is `invocation`: no handler may go without it."""
    import importlib

    functions = Path(__file__).resolve().parents[2] / "functions"
    for path in sorted(functions.glob("*.py")):
        handler = getattr(importlib.import_module(path.stem), "handler", None)
        if handler is not None:
            assert getattr(handler, "__callbridge_invocation__", False), path.name


def test_pool_threads_log_under_the_callers_keys_and_leak_none(monkeypatch: Any) -> None:
    import io
    from concurrent.futures import ThreadPoolExecutor

    from callbridge.infra.observability import bind, in_context, logger, reset_log_context

    written = io.StringIO()  # Powertools keeps the stdout it was created with: read its own stream
    monkeypatch.setattr(logger().registered_handler, "stream", written)

    def job(call_id: str) -> None:
        bind(account="a", call_id=call_id)
        logger().info("in job")

    def later() -> None:
        logger().info("next job")

    reset_log_context()
    bind(account="a")
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(in_context(job), "c1").result()
        pool.submit(in_context(later)).result()
    reset_log_context()
    lines = [json.loads(line) for line in written.getvalue().splitlines() if line.startswith("{")]
    by_message = {line["message"]: line for line in lines}
    assert by_message["in job"]["call_id"] == "c1"
    assert by_message["next job"]["account"] == "a" and "call_id" not in by_message["next job"]


def test_keys_bound_before_the_logger_exists_tag_its_lines_once_it_does(monkeypatch: Any) -> None:
    """A webhook binds its account without creating the logger (a cold start must not import
    Powertools just to hold a key); a line logged later in the request still carries it."""
    import io

    from callbridge.infra import observability

    observability._powertools_logger.cache_clear()
    observability.reset_log_context()
    observability.bind(account="early")
    observability.bind_more(call_id="c9")
    assert observability._powertools_logger.cache_info().currsize == 0
    log = observability.logger()
    written = io.StringIO()
    monkeypatch.setattr(log.registered_handler, "stream", written)
    log.info("later")
    observability.bind(account="other")
    log.info("rebound")  # a reference taken before a bind logs with the new keys
    observability.reset_log_context()
    lines = {line["message"]: line for line in map(json.loads, written.getvalue().splitlines())}
    assert (lines["later"]["account"], lines["later"]["call_id"]) == ("early", "c9")
    assert lines["rebound"]["account"] == "other" and "call_id" not in lines["rebound"]
