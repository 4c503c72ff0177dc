"""The local gateway's log lines never show a secret: telediscount's webhook URL segment, or the
value of a query parameter named like a credential, however the name is spelled or encoded."""

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


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # Routing decodes each segment, so these reach the telediscount route all the same.
        ("/v1/a/tele%64iscount/s3cr3t/incoming", "/v1/a/tele%64iscount/***/incoming"),
        ("/v1/a/TELE%44ISCOUNT/s3cr3t/incoming", "/v1/a/TELE%44ISCOUNT/***/incoming"),
        ("/v1/a/TeleDiscount/s3cr3t/incoming", "/v1/a/TeleDiscount/***/incoming"),
        # An encoded slash inside the secret, or between the prefix and the secret.
        ("/v1/a/telediscount/s3c%2Fr3t/incoming", "/v1/a/telediscount/***/incoming"),
        ("/v1/a/telediscount%2fs3cr3t/incoming", "/v1/a/telediscount%2f***/incoming"),
    ],
    ids=["encoded-prefix", "encoded-upper-prefix", "mixed-case-prefix", "encoded-slash-in-secret", "encoded-slash"],
)
def test_secret_segments_are_masked_in_any_case_and_encoding(text: str, shown: str) -> None:
    assert masked(text) == shown
    assert "s3c" not in masked(text)


@pytest.mark.parametrize(
    ("query", "shown"),
    [
        ("cmd=contact&crm_token=s3cr3t&x=1", "cmd=contact&crm_token=***&x=1"),
        ("CRM_TOKEN=s3cr3t", "CRM_TOKEN=***"),
        ("Crm_Token=s3cr3t", "Crm_Token=***"),
        ("crm%5Ftoken=s3cr3t", "crm%5Ftoken=***"),
        ("crm%255Ftoken=s3cr3t", "crm%255Ftoken=***"),
        ("Token=s3c%2Fr3t%3D%3D&Password=s3cr3t&apiKey=s3cr3t", "Token=***&Password=***&apiKey=***"),
        ("secret=s3cr3t&tokens=visible&phone=79101234567", "secret=***&tokens=visible&phone=79101234567"),
    ],
    ids=["plain", "upper", "mixed", "encoded-name", "double-encoded-name", "encoded-values", "only-secrets"],
)
def test_secret_query_values_are_masked_in_any_case_and_encoding(query: str, shown: str) -> None:
    assert masked(f'"POST /v1/a/cloudpbx?{query} HTTP/1.1" 200 -') == f'"POST /v1/a/cloudpbx?{shown} HTTP/1.1" 200 -'


def test_the_access_log_line_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    from callbridge_local.gateway import log

    with caplog.at_level(logging.INFO, logger=log.name):
        log.info("%s %s -> %s", "GET", masked("/v1/a/telediscount/s3cr3t-path-token/incoming"), "Fn")
    assert "s3cr3t" not in caplog.text


def test_a_route_with_a_secret_path_parameter_gets_its_segment_masked() -> None:
    """A PBX whose webhook URL holds its secret is covered by its template route, not by a name here."""
    from callbridge_local.gateway import Gateway
    from callbridge_local.handlers import FunctionRegistry
    from callbridge_local.routing import Route, RouteTable

    routes = RouteTable([Route.create("GET", "/v1/{account}/otherpbx/{secret}/hook", "Fn", "Api")])
    assert masked("/v1/a/otherpbx/s3cr3t/hook") == "/v1/a/otherpbx/s3cr3t/hook"  # not yet known
    Gateway(routes, FunctionRegistry([]), account_id="123456789012")
    assert masked("/v1/a/otherpbx/s3cr3t/hook") == "/v1/a/otherpbx/***/hook"
    assert masked("/v1/a/OtherPbx/s3cr3t/hook") == "/v1/a/OtherPbx/***/hook"
