"""Metrics: the hand-written ContactLatency EMF line is what Powertools would write; metric() emits
Powertools EMF in the CallBridge namespace."""

from __future__ import annotations

import json
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


def test_metric_writes_one_emf_line_with_its_dimensions(capsys):
    observability.metric("CallsIngested", Source="cloudpbx", Outcome="missed")
    line = _emf(capsys.readouterr().out)
    [directive] = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "CallBridge"
    assert directive["Dimensions"] == [["service", "Source", "Outcome"]]
    assert (line["Source"], line["Outcome"], line["CallsIngested"]) == ("cloudpbx", "missed", [1.0])
