"""HTTP API route selection, with API Gateway's precedence.

For a request, API Gateway picks the most specific route: routes without path variables first, then
routes with ``{name}`` variables (a literal segment beats a variable at the same position), then
greedy ``{proxy+}`` routes (the longest literal prefix first), and finally ``$default``. Within the
same path, an explicit method beats ``ANY``. A path that exists only for other methods is not
found (404), exactly as on HTTP APIs, which have no 405.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from urllib.parse import unquote

DEFAULT_ROUTE_KEY = "$default"
_VARIABLE = re.compile(r"^\{([A-Za-z0-9_.\-]+)(\+?)\}$")


class RouteError(ValueError):
    """A route of the template is malformed or defined twice."""


class SegmentKind(IntEnum):
    # Ordered by precedence: lower values are more specific.
    LITERAL = 0
    VARIABLE = 1
    GREEDY = 2


@dataclass(frozen=True)
class Segment:
    kind: SegmentKind
    text: str  # the literal, or the variable's name


def parse_path(path: str) -> tuple[Segment, ...]:
    if not path.startswith("/"):
        raise RouteError(f"route path {path!r} must start with /")
    if path == "/":
        return ()
    segments: list[Segment] = []
    parts = path[1:].split("/")
    for index, part in enumerate(parts):
        variable = _VARIABLE.match(part)
        if variable:
            greedy = variable.group(2) == "+"
            if greedy and index != len(parts) - 1:
                raise RouteError(f"route path {path!r}: a greedy variable must be the last segment")
            kind = SegmentKind.GREEDY if greedy else SegmentKind.VARIABLE
            segments.append(Segment(kind, variable.group(1)))
        elif "{" in part or "}" in part:
            raise RouteError(f"route path {path!r}: segment {part!r} is not a literal nor a {{variable}}")
        else:
            segments.append(Segment(SegmentKind.LITERAL, part))
    return tuple(segments)


@dataclass(frozen=True)
class Route:
    method: str  # an HTTP method in upper case, or ANY
    path: str | None  # None for $default
    function_id: str
    api_id: str
    segments: tuple[Segment, ...] = field(default=(), compare=False)

    @classmethod
    def create(cls, method: str, path: str | None, function_id: str, api_id: str) -> Route:
        method = method.upper()
        if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
            method = "ANY"
        segments = () if path is None else parse_path(path)
        return cls(method=method, path=path, function_id=function_id, api_id=api_id, segments=segments)

    @property
    def route_key(self) -> str:
        return DEFAULT_ROUTE_KEY if self.path is None else f"{self.method} {self.path}"

    @property
    def precedence(self) -> tuple[int, tuple[int, ...], int]:
        if self.path is None:
            return (3, (), 1)
        kinds = tuple(int(s.kind) for s in self.segments)
        group = max(kinds, default=int(SegmentKind.LITERAL))
        return (group, kinds, 1 if self.method == "ANY" else 0)

    def match_path(self, raw_path: str) -> dict[str, str] | None:
        """The decoded path parameters if ``raw_path`` (as sent, percent-encoded) fits this route."""
        if self.path is None:
            return {}
        if not raw_path.startswith("/"):
            return None
        parts = [] if raw_path == "/" else raw_path[1:].split("/")
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.kind is SegmentKind.GREEDY:
                rest = parts[index:]
                if not rest or rest == [""]:
                    return None
                params[segment.text] = unquote("/".join(rest))
                return params
            if index >= len(parts):
                return None
            part = unquote(parts[index])
            if segment.kind is SegmentKind.LITERAL:
                if part != segment.text:
                    return None
            elif not part:
                return None
            else:
                params[segment.text] = part
        return params if len(parts) == len(self.segments) else None

    def allows(self, method: str) -> bool:
        return self.method in ("ANY", method.upper())


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        ordered = sorted(routes, key=lambda r: r.precedence)
        # Keyed by route alone, not (api, route): locally every API shares one host and port.
        seen: dict[str, str] = {}
        for route in ordered:
            if route.route_key in seen:
                raise RouteError(
                    f"route {route.route_key} is defined by both {seen[route.route_key]} and {route.function_id}"
                )
            seen[route.route_key] = route.function_id
        self.routes: tuple[Route, ...] = tuple(ordered)

    def match(self, method: str, raw_path: str) -> RouteMatch | None:
        for route in self.routes:
            if not route.allows(method):
                continue
            params = route.match_path(raw_path)
            if params is not None:
                return RouteMatch(route, params)
        return None

    def __len__(self) -> int:
        return len(self.routes)
