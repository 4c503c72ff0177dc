"""The SSRF guard: which URLs given to us by a third party (a PBX's recording link) we may fetch, and
the one place where the fetch opens a socket.

Policy
    - `https` only; plain `http` only for hosts in the caller's allowlist.
    - No credentials in the URL; ports 80, 443 and 1024-65535 only (not 22, 25, ...).
    - The host is resolved once, here, with `socket.getaddrinfo`. Every address it resolves to must be
      globally reachable: loopback, private, link-local (169.254.169.254, the instance metadata),
      multicast, CGNAT (100.64.0.0/10), unspecified, reserved and the other special-purpose ranges are
      refused, also when embedded in IPv6 (IPv4-mapped, NAT64); 6to4 and Teredo are refused outright.
      One bad address refuses the host: which address a connection ends up on must not matter.
    - The socket is then connected to one of exactly those checked addresses (never to a name that a
      second, rebinding DNS answer could point elsewhere); TLS SNI, certificate verification and the
      Host header still use the hostname.
    - The allowlist (exact host:port pairs an account explicitly trusts, such as a PBX on a private
      network, or 127.0.0.1:<port> of a fake in tests) lifts the address and port checks and allows
      `http` for those host:ports only: trusting one service of a host does not open its other ports
      (an SSH or database port beside it). A bare host stands for its default ports, 80 and 443.
      Redirects are checked like any other URL, hop by hop.

API
    check_url(url, allow_hosts) -> httpx.URL   scheme, credentials, port, IP literal: before any I/O
    resolve(host, port, allow_hosts) -> list[IPv4Address | IPv6Address]   one lookup, all checked
    blocked_reason(ip) -> str | None           why an address is refused (None: public)
    normalize_hosts(entries) -> frozenset[str] the canonical allowlist ("host:port" keys) the functions
                                               above expect, from "host:port", "[v6]:port" or a bare host
    host_key(host, port) -> str                the key of one host:port in that allowlist
    GuardedBackend(allow_hosts, deadline)      an httpcore network backend doing resolve-then-connect

The error types of the whole recordings package live here, at the bottom of its import graph:

    FetchError
    ├── TransientFetchError     5xx, 408, 429, timeouts, connection errors: the caller retries
    └── PermanentFetchError     4xx, bad URL, TLS verification failure: retrying will not help
        ├── BlockedAddress      a refused address or port
        ├── DisallowedScheme    not https (or http to a host not allowed)
        └── TooLarge            more than the caller's max_bytes
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """A recording could not be fetched."""


class TransientFetchError(FetchError):
    """Worth retrying later: the server or the network failed, not the request."""

    def __init__(self, message: str, *, status: int | None = None, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


class PermanentFetchError(FetchError):
    """Retrying the same URL will fail the same way."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class BlockedAddress(PermanentFetchError):
    """The URL leads to an address (or port) we never connect to."""


class DisallowedScheme(PermanentFetchError):
    """Not https, or plain http to a host that is not allowed."""


class TooLarge(PermanentFetchError):
    """The body is larger than the caller's limit."""


ALLOWED_SCHEMES = frozenset({"https", "http"})
_DEFAULT_PORTS = {"https": 443, "http": 80}

# Special-purpose ranges that some Python versions do not flag through is_private / is_reserved
# (the ipaddress tables changed in 3.11.10 / 3.12.4): listed here so that the verdict does not depend
# on the patch level of the runtime.
_BLOCKED_NETWORKS: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...] = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "'this host' network"),
    (ipaddress.IPv4Network("10.0.0.0/8"), "private"),
    (ipaddress.IPv4Network("100.64.0.0/10"), "carrier-grade NAT"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "loopback"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "link-local"),
    (ipaddress.IPv4Network("172.16.0.0/12"), "private"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "IETF protocol assignments"),
    (ipaddress.IPv4Network("192.168.0.0/16"), "private"),
    (ipaddress.IPv4Network("198.18.0.0/15"), "benchmarking"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved"),
    (ipaddress.IPv6Network("::/128"), "unspecified"),
    (ipaddress.IPv6Network("::1/128"), "loopback"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64"),
    (ipaddress.IPv6Network("100::/64"), "discard-only"),
    (ipaddress.IPv6Network("2001::/32"), "Teredo tunnel"),
    (ipaddress.IPv6Network("2001:db8::/32"), "documentation"),
    # 6to4 is deprecated (RFC 7526) and newer Pythons call all of it private: refused outright so that
    # the verdict is the same on every runtime.
    (ipaddress.IPv6Network("2002::/16"), "6to4 tunnel"),
    (ipaddress.IPv6Network("3fff::/20"), "documentation"),
    (ipaddress.IPv6Network("fc00::/7"), "unique local (private)"),
    (ipaddress.IPv6Network("fe80::/10"), "link-local"),
    (ipaddress.IPv6Network("fec0::/10"), "site-local"),
    (ipaddress.IPv6Network("ff00::/8"), "multicast"),
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be connected to, or None when it is a globally reachable address."""
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv6 address that carries an IPv4 one reaches that IPv4 host (the kernel for mapped
        # addresses, a NAT64 or 6to4 gateway otherwise): judge the IPv4 host.
        if ip.ipv4_mapped is not None:
            return _embedded("IPv4-mapped", ip.ipv4_mapped)
        if ip in _NAT64:
            return _embedded("NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            return _embedded("6to4", ip.sixtofour) or "6to4 tunnel"
    for network, name in _BLOCKED_NETWORKS:
        if ip.version == network.version and ip in network:
            return name
    for name, flagged in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flagged:
            return name
    if not ip.is_global:
        return "not globally reachable"
    return None


def _embedded(kind: str, inner: ipaddress.IPv4Address) -> str | None:
    reason = blocked_reason(inner)
    return None if reason is None else f"{kind} form of {inner} ({reason})"


class ShorthandAddress(ValueError):
    """A host that is an IPv4 address in a shorthand spelling (normalize_host)."""


# The instance metadata service (AWS: IPv4 link-local, and its IPv6 address): never to be trusted,
# whatever an account file says - it hands out the function's own credentials.
METADATA_NETWORKS = (ipaddress.IPv4Network("169.254.0.0/16"), ipaddress.IPv6Network("fd00:ec2::254/128"))


def is_metadata(host: str) -> bool:
    """Whether `host` (normalised) is an address of the instance metadata service's networks."""
    literal = _ip_literal(host)
    return literal is not None and any(literal.version == n.version and literal in n for n in METADATA_NETWORKS)


def normalize_host(host: str) -> str:
    """The form hosts are compared in: lower case, no brackets, no trailing dot, IDNA-encoded,
    IP literals in their canonical notation (so that '0:0::1' matches '::1')."""
    value = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    literal = _ip_literal(value)
    if literal is not None:
        return str(literal)
    shorthand = _ipv4_shorthand(value)
    if shorthand is not None:
        # `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`: the resolver reads them as an IPv4
        # address, we would read them as a name; refused, so that an address has one spelling.
        kind = blocked_reason(shorthand) or "public"
        raise ShorthandAddress(f"{host} is a shorthand of the IPv4 address {shorthand} ({kind}): write {shorthand}")
    if not value or any(c in value for c in "/@:?#[]\\%"):
        raise ValueError(f"not a hostname: {host!r}")
    try:
        encoded = httpx.URL(scheme="http", host=value).raw_host.decode("ascii").rstrip(".")
    except (httpx.InvalidURL, UnicodeError) as exc:
        raise ValueError(f"not a hostname: {host!r}") from exc
    if not _HOSTNAME.fullmatch(encoded):
        raise ValueError(f"not a hostname: {host!r}")
    return encoded


# Letters, digits, hyphens and dots after IDNA encoding; underscores occur in real DNS names.
_HOSTNAME = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?")


# The ports a bare host (no ":port") in an allowlist stands for: those of https and http URLs that
# name no port. Older account files named hosts only; they keep working for services on those ports.
BARE_HOST_PORTS = (443, 80)


def host_key(host: str, port: int) -> str:
    """The allowlist key of `host` (already normalised) at `port`: "host:port", "[v6]:port"."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host_port(entry: str) -> tuple[str, int | None]:
    """("host", port) from "host:port", "[v6]:port" or a bare host / IP literal (port None).
    Raises ValueError for anything else (a scheme, a path, a port outside 1-65535, a wildcard)."""
    value = entry.strip()
    port_text: str | None = None
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"not host:port: {entry!r}")
        port_text = rest[1:] if rest else None
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host = value  # a hostname, an IPv4 literal or a bare IPv6 literal
    port: int | None = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
            raise ValueError(f"not a port (1-65535): {entry!r}")
        port = int(port_text)
    return normalize_host(host), port


def normalize_hosts(entries: Iterable[str]) -> frozenset[str]:
    """The canonical allowlist ("host:port" keys, see host_key) from "host:port" entries; a bare host
    stands for its ports 443 and 80 (BARE_HOST_PORTS). No wildcards."""
    if isinstance(entries, str):
        # A lone string is iterable too: it would allow each of its characters as a host.
        raise TypeError("allow_hosts must be a collection of host:port entries, not a string")
    keys: set[str] = set()
    for entry in entries:
        host, port = parse_host_port(entry)
        keys.update(host_key(host, p) for p in ((port,) if port is not None else BARE_HOST_PORTS))
    return frozenset(keys)


def _ipv4_shorthand(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address the C resolver (inet_aton) reads a non-canonical numeric host as."""
    if not host or not all(c in "0123456789abcdefx." for c in host) or not host[0].isdigit():
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.removeprefix("[").removesuffix("]").split("%", 1)[0])
    except ValueError:
        return None


def _unmapped(ip: IPAddress) -> IPAddress:
    # Connect to ::ffff:a.b.c.d as plain IPv4: same host, and no dependence on dual-stack sockets.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def check_url(url: str | httpx.URL, allow_hosts: frozenset[str]) -> httpx.URL:
    """Everything about `url` that can be refused without any I/O; returns the parsed URL.

    `allow_hosts` must come from normalize_hosts(). The address check proper happens on connect
    (GuardedBackend), since only then is the address known; an IP literal is refused here already."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError, UnicodeError) as exc:
        raise PermanentFetchError(f"malformed URL: {exc}") from None
    scheme = parsed.scheme
    if scheme not in ALLOWED_SCHEMES:
        raise DisallowedScheme(f"scheme {scheme or '(none)'!r} is not allowed")
    try:
        host = normalize_host(parsed.raw_host.decode("ascii"))
    except (ValueError, UnicodeError) as exc:
        if isinstance(exc, ShorthandAddress):
            raise BlockedAddress(str(exc)) from None
        raise PermanentFetchError("URL without a valid host") from None
    port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise PermanentFetchError(f"invalid port {port}")
    allowed = host_key(host, port) in allow_hosts
    if scheme == "http" and not allowed:
        raise DisallowedScheme(f"plain http is allowed only for explicitly allowed host:ports, not {host}:{port}")
    if parsed.userinfo:
        # Never forwarded anywhere (a redirect would carry them to another host), and a classic way to
        # make a URL look like it points somewhere else: https://trusted.example@10.0.0.1/.
        raise PermanentFetchError("credentials in the URL are not supported")
    if not allowed and port not in (80, 443) and port < 1024:
        raise BlockedAddress(f"port {port} is not allowed")
    literal = _ip_literal(host)
    if literal is not None and not allowed:
        reason = blocked_reason(literal)
        if reason is not None:
            raise BlockedAddress(f"{literal} is {reason}")
    return parsed


def resolve(host: str, port: int, allow_hosts: frozenset[str]) -> list[IPAddress]:
    """Resolve `host` once and check every address it resolves to (unless host:port is allowed).

    Returns the addresses to connect to, in resolver order, IPv4-mapped ones as plain IPv4."""
    key = normalize_host(host)
    literal = _ip_literal(key)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            if exc.errno in _NO_SUCH_NAME:
                raise PermanentFetchError(f"{host} does not resolve") from None
            raise TransientFetchError(f"resolving {host} failed: {exc}") from None
        except UnicodeError:
            raise PermanentFetchError(f"not a hostname: {host!r}") from None
        addresses = []
        for family, _type, _proto, _name, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            # A scope id (fe80::1%eth0) only occurs on link-local addresses, which are refused anyway.
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise PermanentFetchError(f"{host} has no IP address")
    if host_key(key, port) not in allow_hosts:
        for address in addresses:
            reason = blocked_reason(address)
            if reason is not None:
                raise BlockedAddress(f"{host} resolves to {address}, which is {reason}")
    unique: list[IPAddress] = []
    for address in map(_unmapped, addresses):
        if address not in unique:
            unique.append(address)
    return unique


_NO_SUCH_NAME = frozenset(
    code for code in (getattr(socket, "EAI_NONAME", None), getattr(socket, "EAI_NODATA", None)) if code is not None
)


class GuardedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that resolves and checks the host itself and connects the socket
    to one of the checked addresses; every socket operation also honours an overall deadline.

    Why a network backend rather than rewriting the URL to the IP (with a Host header and the
    sni_hostname extension): the check then sits at the only place a connection is ever opened, so a
    redirect, a reconnect or a future change in how requests are built cannot reach a socket without
    it, and httpcore keeps doing SNI, certificate verification and the Host header with the hostname,
    untouched. httpcore hands us the hostname; SyncBackend is given the IP literal, for which
    create_connection does no DNS lookup."""

    def __init__(self, allow_hosts: frozenset[str], *, deadline: float | None = None) -> None:
        self._allow_hosts = allow_hosts
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port, self._allow_hosts)
        failure: Exception | None = None
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=_budget(timeout, self._deadline, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        assert failure is not None  # resolve() returns at least one address
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise BlockedAddress("unix sockets are never used for fetching")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _budget(timeout: float | None, deadline: float | None, error: type[Exception]) -> float | None:
    """The per-operation timeout, shortened so that no operation outlives the overall deadline."""
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise error("overall deadline exceeded")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """Caps every read and write by the time left, so that a server trickling one byte just inside the
    read timeout cannot stretch a download past the overall deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float | None) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(timeout, self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(timeout, self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        budget = _budget(timeout, self._deadline, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, budget), self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
