"""What a PBX's webhooks declare, and what they are handed: transport-neutral values, no API Gateway.

A PBX package that receives webhooks has a `webhooks` module whose `WEBHOOKS` is a PbxWebhooks
(callbridge.registry finds it by kind). One generic edge module (edge/webhooks.py) serves every
declared route under /v1/{account}/{kind}/…: it finds the route, lets the package read the request
(`read`: the credential it presents and its fields), authenticates the account once (the account's
PBX must be this kind), and hands the account and the read webhook to `handle`, which parses and
records it and gives the answer. What the edge decides for every PBX alike:

- an unknown account, a wrong credential and another PBX's account get the package's `refused`;
- a webhook named in `lookups` asks who is calling while a phone rings: `handle` returns a
  CallerLookup, the caller directory and the CRMs answer it (features/callers.py), and
  `caller_answer` words the result; such a request is authenticated on the fast path, and our own
  failure gets an empty caller answer, never an error, so that the ringing phone is answered;
- any other failure of ours is a 503, so that the PBX sends the webhook again.

A package's `webhooks` module is imported on the contact path: it must stay light (its parsing
modules, the ones that write calls, are imported inside `handle`; bench/benchmark.py measures it).
So are these classes: plain slotted classes, as a frozen dataclass's generated methods cost the
contact path's cold start about half a millisecond each. Their instances are not to be changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from callbridge.core.accounts import Account


class WebhookRoute:
    """One address: `path` is below /v1/{account}/{kind} ("" for that address itself), its
    segments literal or a `{name}` path parameter. `name` tells `read` which webhook it is ("" when
    the body says it)."""

    __slots__ = ("_segments", "method", "name", "path")

    def __init__(self, method: str, path: str, name: str) -> None:
        self.method, self.path, self.name = method, path, name
        self._segments = [part for part in path.split("/") if part]

    def matches(self, segments: list[str]) -> bool:
        """Whether the path's segments below /v1/{account}/{kind} are this route's; a parameter
        matches any non-empty segment (also its own `{name}`, as in an API Gateway route key)."""
        mine = self._segments
        return len(mine) == len(segments) and all(
            (want.startswith("{") and bool(got)) or want == got for want, got in zip(mine, segments, strict=True)
        )

    def __repr__(self) -> str:
        return f"WebhookRoute({self.method!r}, {self.path!r}, {self.name!r})"


class WebhookRequest:
    """The request as it arrived, for the package to read: `headers` with names in lower case,
    `started` the time.monotonic() of its arrival (a caller lookup's budget counts from it)."""

    __slots__ = ("account_id", "body", "headers", "is_base64", "path_parameters", "query", "route", "started")

    def __init__(
        self,
        *,
        account_id: str,
        route: WebhookRoute,
        path_parameters: Mapping[str, str],
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: str | None,
        is_base64: bool,
        started: float,
    ) -> None:
        self.account_id, self.route = account_id, route
        self.path_parameters, self.query, self.headers = path_parameters, query, headers
        self.body, self.is_base64, self.started = body, is_base64, started


class Webhook:
    """A request as its package read it: which webhook (`name`), the credential it presents, and
    its fields (the body's or the query's)."""

    __slots__ = ("credential", "fields", "name", "request")

    def __init__(self, *, name: str, credential: str, fields: dict[str, str], request: WebhookRequest) -> None:
        self.name, self.credential, self.fields, self.request = name, credential, fields, request


class WebhookAnswer:
    """The HTTP answer: a JSON body, or an empty one for None; or `text`, a plain-text body (a PBX
    that checks our address by having a value echoed: Zadarma's zd_echo)."""

    __slots__ = ("body", "status", "text")

    def __init__(self, status: int, body: dict[str, Any] | None = None, *, text: str | None = None) -> None:
        self.status, self.body, self.text = status, body, text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WebhookAnswer) and (self.status, self.body, self.text) == (
            other.status,
            other.body,
            other.text,
        )

    __hash__ = None  # type: ignore[assignment]  # a body is a dict

    def __repr__(self) -> str:
        shown = f", text={self.text!r}" if self.text is not None else ""
        return f"WebhookAnswer({self.status!r}, {self.body!r}{shown})"


class WebhookRefused(Exception):
    """The request is refused with `answer` (a bad body, a missing field): never our failure."""

    def __init__(self, answer: WebhookAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


class CallerLookup:
    """`handle`'s request to look the caller up (an empty phone: a withheld caller id)."""

    __slots__ = ("phone",)

    def __init__(self, phone: str) -> None:
        self.phone = phone


def _no_caller_answer(found: Mapping[str, str]) -> WebhookAnswer:
    raise TypeError("this PBX declares no caller lookup")


class PbxWebhooks:
    """A PBX's declaration:

    - `kind`: the account file's pbx.kind, and the path segment after the account;
    - `title`: its name in log lines ("Cloud PBX webhook failed");
    - `read`: the request's credential, name and fields; WebhookRefused for one it cannot read;
    - `refused`: the answer to an unknown account, a wrong credential, another PBX's account and
      an unknown route;
    - `handle`: parse and record (WebhookRefused for a record it cannot take), or a CallerLookup;
    - `lookups`: the webhooks that ask who is calling (their answer races a ringing phone);
    - `caller_answer`: the lookup's result (contact_name, responsible; {} when unknown) as this
      PBX's answer;
    - `caller_phone`: the number a lookup's CallerLookup will carry, as the read webhook has it
      before `handle` (None: not there, or not this PBX's to tell): the edge reads the caller's
      directory entry with the account then, in one round trip. Only a speed-up: the entry is used
      only when the CallerLookup's number gives the same key.
    """

    __slots__ = ("caller_answer", "caller_phone", "handle", "kind", "lookups", "read", "refused", "routes", "title")

    def __init__(
        self,
        *,
        kind: str,
        title: str,
        routes: tuple[WebhookRoute, ...],
        read: Callable[[WebhookRequest], Webhook],
        refused: WebhookAnswer,
        handle: Callable[[Account, Webhook], WebhookAnswer | CallerLookup],
        lookups: frozenset[str] = frozenset(),
        caller_answer: Callable[[Mapping[str, str]], WebhookAnswer] = _no_caller_answer,
        caller_phone: Callable[[Webhook], str | None] | None = None,
    ) -> None:
        self.kind, self.title, self.routes = kind, title, routes
        self.read, self.refused, self.handle = read, refused, handle
        self.lookups, self.caller_answer, self.caller_phone = lookups, caller_answer, caller_phone

    def route(self, segments: list[str]) -> WebhookRoute | None:
        return next((route for route in self.routes if route.matches(segments)), None)
