"""The SSRF guard, proven without a packet leaving the machine: name resolution and socket connects are
patched (tests/integration/recording_server.FakeNet), and every test asserts which connects were
attempted - none at all for a refused URL."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest

from callbridge.features.recordings.fetch import open_download
from callbridge.infra.netguard import (
    BlockedAddress,
    DisallowedScheme,
    PermanentFetchError,
    TransientFetchError,
    blocked_reason,
    check_url,
    normalize_host,
    normalize_hosts,
    resolve,
)
from tests.integration.recording_server import FakeNet, LeftTheMachine, guarded_network

PUBLIC = "1.1.1.1"  # a sinkhole: "connected to" locally and refused, nothing is sent


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNet]:
    fake_net = guarded_network(monkeypatch)
    fake = next(fake_net)
    fake.sinkholes.add(PUBLIC)
    fake.add("public.test", PUBLIC)
    fake.add("internal.test", "10.0.0.5")
    fake.add("metadata.test", "169.254.169.254")
    fake.add("loopback.test", "127.0.0.1")
    fake.add("mixed.test", PUBLIC, "10.0.0.1")
    fake.add("mixed6.test", PUBLIC, "fd00::1")
    fake.add("mapped.test", "::ffff:10.0.0.1")
    fake.add("mapped-public.test", f"::ffff:{PUBLIC}")
    fake.add("nat64.test", "64:ff9b::a9fe:a9fe")
    yield fake
    yield from fake_net


def fetch(url: str, allow: frozenset[str] | set[str] = frozenset()) -> None:
    with open_download(url, allow_hosts=allow, max_bytes=1024, timeout_s=5) as download:
        list(download.chunks())


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# ---------------------------------------------------------------------------------------------
# Addresses
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.254",
        "169.254.169.254",
        "169.254.170.2",  # ECS task metadata
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "240.0.0.1",
        "198.18.0.1",
        "192.0.0.170",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",  # the IPv6 instance metadata
        "fc00::1",
        "fec0::1",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::10.0.0.1",  # IPv4-compatible (deprecated)
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b:1::808:808",  # local-use NAT64
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2002:808:808::1",  # 6to4 of a public address: deprecated, refused as well
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "2001:db8::1",
        "3fff::1",
        "100::1",
    ],
)
def test_special_addresses_are_blocked(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address",
    [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.215.14",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) is None


def test_reasons_name_the_embedded_address() -> None:
    reason = blocked_reason(ipaddress.ip_address("::ffff:169.254.169.254"))
    assert reason is not None
    assert "169.254.169.254" in reason
    assert "link-local" in reason


# ---------------------------------------------------------------------------------------------
# URLs refused before any I/O
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("file:///etc/passwd", DisallowedScheme),
        ("ftp://public.test/rec.mp3", DisallowedScheme),
        ("gopher://public.test/", DisallowedScheme),
        ("data:audio/mpeg;base64,AAAA", DisallowedScheme),
        ("//public.test/rec.mp3", DisallowedScheme),
        ("http://public.test/rec.mp3", DisallowedScheme),
        ("http://127.0.0.1:9001/2018-06-01/runtime/invocation/next", DisallowedScheme),
        ("https://user:secret@public.test/rec.mp3", PermanentFetchError),
        ("https://public.test@10.0.0.1/rec.mp3", PermanentFetchError),
        ("https://public.test:22/rec.mp3", BlockedAddress),
        ("https://public.test:25/rec.mp3", BlockedAddress),
        ("https://public.test:0/rec.mp3", PermanentFetchError),
        ("https://public.test:65536/rec.mp3", PermanentFetchError),
        ("https://public.test:-1/rec.mp3", PermanentFetchError),
        ("https:///rec.mp3", PermanentFetchError),
        ("https://0177.0.0.1/", PermanentFetchError),
        ("https://a b.test/", PermanentFetchError),
        ("https://127.0.0.1/rec.mp3", BlockedAddress),
        ("https://[::1]/rec.mp3", BlockedAddress),
        ("https://[::ffff:127.0.0.1]:9001/", BlockedAddress),
        ("https://169.254.169.254/latest/meta-data/", BlockedAddress),
    ],
)
def test_refused_without_io(net: FakeNet, url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        check_url(url, frozenset())
    with pytest.raises(error):
        fetch(url)
    assert net.lookups == []
    assert net.connects == []


def test_odd_but_harmless_ports_pass_the_url_check() -> None:
    assert check_url("https://public.test:8443/rec.mp3", frozenset()).port == 8443
    assert check_url("https://public.test:443/rec.mp3", frozenset()).port is None


# ---------------------------------------------------------------------------------------------
# Whole fetches: refused before any connect
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/rec.mp3",
        "https://10.0.0.1/rec.mp3",
        "https://172.16.0.1/rec.mp3",
        "https://192.168.1.1/rec.mp3",
        "https://100.64.0.1/rec.mp3",
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://[::1]/rec.mp3",
        "https://[fe80::1]/rec.mp3",
        "https://[::ffff:10.0.0.1]/rec.mp3",
        "https://0.0.0.0/rec.mp3",
        "https://2130706433/rec.mp3",  # 127.0.0.1 as one number
        "https://0x7f.1/rec.mp3",
        "https://127.1/rec.mp3",
        "https://internal.test/rec.mp3",
        "https://metadata.test/latest/meta-data/",
        "https://loopback.test:9001/2018-06-01/runtime/invocation/next",
        "https://mixed.test/rec.mp3",
        "https://mixed6.test/rec.mp3",
        "https://mapped.test/rec.mp3",
        "https://nat64.test/rec.mp3",
    ],
)
def test_private_destinations_are_refused_before_connecting(net: FakeNet, url: str) -> None:
    with pytest.raises(BlockedAddress):
        fetch(url)
    assert net.connects == []


def test_a_hostname_is_resolved_once_and_the_checked_address_is_connected_to(net: FakeNet) -> None:
    with pytest.raises(TransientFetchError):
        fetch("https://public.test/rec.mp3")
    assert net.lookups == ["public.test"]
    assert net.connects == [(PUBLIC, 443)]


def test_dns_rebinding_cannot_redirect_the_connection(net: FakeNet) -> None:
    net.add_rebinding("rebind.test", first=[PUBLIC], later=["127.0.0.1"])
    with pytest.raises(TransientFetchError):
        fetch("https://rebind.test/rec.mp3")
    assert net.lookups == ["rebind.test"]
    assert net.connects == [(PUBLIC, 443)]


def test_every_checked_address_is_tried_and_only_those(net: FakeNet) -> None:
    net.sinkholes.add("1.0.0.1")
    net.add("two.test", PUBLIC, "1.0.0.1")
    with pytest.raises(TransientFetchError):
        fetch("https://two.test:8443/rec.mp3")
    assert net.connects == [(PUBLIC, 8443), ("1.0.0.1", 8443)]


def test_ipv4_mapped_answers_are_connected_to_as_ipv4(net: FakeNet) -> None:
    assert resolve("mapped-public.test", 443, frozenset()) == [ipaddress.ip_address(PUBLIC)]
    assert net.connects == []


def test_unknown_hosts_are_permanent_failures(net: FakeNet) -> None:
    with pytest.raises(PermanentFetchError):
        fetch("https://nowhere.test/rec.mp3")
    assert net.connects == []


# ---------------------------------------------------------------------------------------------
# The allowlist
# ---------------------------------------------------------------------------------------------
def test_an_allowed_loopback_host_is_connected_to_even_over_http(net: FakeNet) -> None:
    port = closed_port()
    with pytest.raises(TransientFetchError):  # nothing listens there: refused by the kernel
        fetch(f"http://127.0.0.1:{port}/rec.mp3", allow={f"127.0.0.1:{port}"})
    assert net.connects == [("127.0.0.1", port)]


def test_an_allowed_host_port_opens_that_port_only(net: FakeNet) -> None:
    port = closed_port()
    other = port + 1 if port < 65535 else port - 1
    # The same host on another port, and a bare host (its ports 443 and 80), stay refused.
    for url, allow in (
        (f"http://127.0.0.1:{other}/rec.mp3", {f"127.0.0.1:{port}"}),
        (f"https://127.0.0.1:{other}/rec.mp3", {f"127.0.0.1:{port}"}),
        (f"https://127.0.0.1:{port}/rec.mp3", {"127.0.0.1"}),
        (f"https://loopback.test:{other}/rec.mp3", {f"loopback.test:{port}"}),
    ):
        with pytest.raises((BlockedAddress, DisallowedScheme)):
            fetch(url, allow=allow)
    assert net.connects == []
    # A bare host still opens its default ports (account files written before ports were named).
    with pytest.raises(TransientFetchError):  # nothing listens on 127.0.0.1:443 here
        fetch("https://127.0.0.1/rec.mp3", allow={"127.0.0.1"})
    assert net.connects == [("127.0.0.1", 443)]


def test_an_allowed_name_still_connects_to_the_address_it_resolved_to(net: FakeNet) -> None:
    port = closed_port()
    with pytest.raises(TransientFetchError):
        fetch(f"http://loopback.test:{port}/rec.mp3", allow={f"LOOPBACK.test.:{port}"})
    assert net.lookups == ["loopback.test"]
    assert net.connects == [("127.0.0.1", port)]


def test_the_allowlist_is_exact(net: FakeNet) -> None:
    net.add("sub.loopback.test", "127.0.0.1")
    with pytest.raises(BlockedAddress):
        fetch("https://sub.loopback.test/rec.mp3", allow={"loopback.test"})
    with pytest.raises(BlockedAddress):
        fetch("https://127.0.0.2/rec.mp3", allow={"127.0.0.1"})
    with pytest.raises(DisallowedScheme):
        fetch("http://public.test/rec.mp3", allow={"internal.test"})
    assert net.connects == []


def test_allowlist_entries_are_normalised() -> None:
    assert normalize_hosts(["[::1]:8443", "[0:0::1]:8443", "PBX.Example.COM.:8080", "bücher.test:443"]) == {
        "[::1]:8443",
        "pbx.example.com:8080",
        "xn--bcher-kva.test:443",
    }
    # A bare host (or IPv6 literal) stands for its default ports.
    assert normalize_hosts(["127.0.0.1", "::1"]) == {"127.0.0.1:443", "127.0.0.1:80", "[::1]:443", "[::1]:80"}
    assert normalize_host("::ffff:7f00:1") == normalize_host("::FFFF:127.0.0.1")


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "pbx.test:0",
        "pbx.test:65536",
        "pbx.test:*",
        "pbx.test:",
        "https://pbx.test",
        "a/b",
        "user@pbx.test",
        "[::1]x",
    ],
)
def test_malformed_allowlist_entries_are_rejected(entry: str) -> None:
    with pytest.raises(ValueError):
        normalize_hosts([entry])


def test_a_lone_string_is_not_an_allowlist() -> None:
    with pytest.raises(TypeError):
        normalize_hosts("127.0.0.1")


# ---------------------------------------------------------------------------------------------
# The test double itself: a broken guard fails the test instead of sending a packet
# ---------------------------------------------------------------------------------------------
def test_the_fake_network_stops_and_reports_a_connect_to_a_public_address(net: FakeNet) -> None:
    with pytest.raises(LeftTheMachine):
        socket.create_connection(("93.184.215.14", 443), timeout=1)
    with pytest.raises(LeftTheMachine), socket.socket() as sock:
        sock.connect(("10.0.0.1", 80))
    with pytest.raises(LeftTheMachine), socket.socket() as sock:
        sock.connect(("public.test", 80))
    assert len(net.violations) == 3
    net.violations.clear()  # seen: do not fail this test on teardown
