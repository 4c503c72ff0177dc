"""The local gateway's log lines never show a secret path segment (telediscount's webhook URL)."""

from __future__ import annotations

import logging

import pytest

from callbridge_local.gateway import masked


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("/v1/tele/telediscount/s3cr3t-path-token/finished", "/v1/tele/telediscount/***/finished"),
        ('"GET /v1/a/telediscount/s3cr3t?x=1 HTTP/1.1" 200 -', '"GET /v1/a/telediscount/***?x=1 HTTP/1.1" 200 -'),
        ("/v1/demo/cloudpbx/history", "/v1/demo/cloudpbx/history"),
    ],
)
def test_secret_segments_are_masked(text: str, shown: str) -> None:
    assert masked(text) == shown


def test_the_access_log_line_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    from callbridge_local.gateway import log

    with caplog.at_level(logging.INFO, logger=log.name):
        log.info("%s %s -> %s", "GET", masked("/v1/a/telediscount/s3cr3t-path-token/incoming"), "Fn")
    assert "s3cr3t" not in caplog.text
