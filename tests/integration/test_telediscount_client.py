"""TelediscountApi against the fake telediscount API on 127.0.0.1 (docs/protocols/telediscount.md)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callbridge.infra.netguard import normalize_hosts
from callbridge.pbx.telediscount.client import TelediscountApi, TelediscountError, call_records
from tests.fakes.base import serve
from tests.fakes.telediscount import AUDIO, FakeTelediscount
from tests.support import host_port

KEY = "abonent1609ssHJka8732kfrsd6778ahd982h"


def trust(url: str) -> frozenset[str]:
    return normalize_hosts([host_port(url)])


@pytest.fixture
def fake() -> Iterator[tuple[FakeTelediscount, TelediscountApi]]:
    peer = FakeTelediscount(api_key=KEY)
    with serve(peer) as base:
        yield (
            peer,
            TelediscountApi(api_url=f"{base}/api.php/telephony", api_key=KEY, timeout_s=5, trusted_hosts=trust(base)),
        )


def test_outcome_sends_the_seed_parameters(fake: tuple[FakeTelediscount, TelediscountApi]) -> None:
    peer, api = fake
    assert api.outcome("SIP/00000000672", "74951234567") == {"result": "ok"}
    path, query = peer.requests[-1]
    assert path == "/api.php/telephony/outcome"
    assert query == {"num_a": "SIP/00000000672", "num_b": "74951234567", "abonent_api_key": KEY}


def test_get_calls_filters_and_records(fake: tuple[FakeTelediscount, TelediscountApi]) -> None:
    peer, api = fake
    peer.calls = [{"api_call_id": "a1", "num_a": "79039998877"}, {"api_call_id": "b2", "num_a": "1"}]
    assert [c["api_call_id"] for c in api.get_calls()] == ["a1", "b2"]
    assert [c["api_call_id"] for c in api.get_calls(api_call_id="b2")] == ["b2"]
    assert "num_m" not in peer.requests[-1][1]  # empty filters are not sent


def test_get_record_returns_the_audio(fake: tuple[FakeTelediscount, TelediscountApi]) -> None:
    peer, api = fake
    peer.calls = [{"api_call_id": "a1"}]
    response = api.get_record("a1")
    assert response.content == AUDIO and response.content_type == "audio/mpeg"
    assert api.record_url("a1").endswith("/api.php/telephony/get_record?api_call_id=a1")
    assert KEY not in api.record_url("a1")


def test_errors_are_typed_and_never_carry_the_key(fake: tuple[FakeTelediscount, TelediscountApi]) -> None:
    _, api = fake
    with pytest.raises(TelediscountError) as error:
        TelediscountApi(api_url=api.api_url, api_key="wrong-key-12345", trusted_hosts=api.trusted_hosts).get_calls()
    assert error.value.status == 403 and not error.value.transient
    with pytest.raises(TelediscountError) as error:
        api.get_record("missing")
    assert KEY not in str(error.value) and "wrong-key" not in str(error.value)
    unreachable = TelediscountApi(
        api_url="http://127.0.0.1:9/api.php/telephony",
        api_key=KEY,
        timeout_s=2,
        trusted_hosts=trust("http://127.0.0.1:9"),
    )
    with pytest.raises(TelediscountError) as error:
        unreachable.outcome("SIP/1", "74951234567")
    assert error.value.transient and KEY not in str(error.value)
    assert KEY not in repr(api)


def test_the_api_on_an_untrusted_private_address_receives_nothing(
    fake: tuple[FakeTelediscount, TelediscountApi],
) -> None:
    """The account's key goes nowhere it did not trust: the fake on loopback, not in the account's
    trusted_hosts (nor its other port), gets no request, and the refusal is final, not retried."""
    peer, api = fake
    before = len(peer.requests)
    port = int(api.api_url.split(":")[2].split("/")[0])
    for trusted in (frozenset(), trust(f"http://127.0.0.1:{port + 1}")):
        untrusted = TelediscountApi(api_url=api.api_url, api_key=KEY, timeout_s=5, trusted_hosts=trusted)
        with pytest.raises(TelediscountError, match="address refused") as error:
            untrusted.outcome("SIP/00000000672", "74951234567")
        assert not error.value.transient and KEY not in str(error.value)
    assert len(peer.requests) == before
    assert api.outcome("SIP/00000000672", "74951234567") == {"result": "ok"}  # the trusted one does
    assert len(peer.requests) == before + 1


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        ([{"api_call_id": "x"}], ["x"]),
        ({"data": [{"api_call_id": "x"}]}, ["x"]),
        ({"x": {"api_call_id": "x"}}, ["x"]),
        ({"api_call_id": "x"}, ["x"]),
        ("junk", []),
    ],
)
def test_call_records_accepts_every_plausible_shape(body: object, ids: list[str]) -> None:
    assert [r["api_call_id"] for r in call_records(body)] == ids
