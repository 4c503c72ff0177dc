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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callbridge.core.accounts import Account


@dataclass(frozen=True)
class WebhookRoute:
    """One address: `path` is below /v1/{account}/{kind} ("" for that address itself), its
    segments literal or a `{name}` path parameter. `name` tells `read` which webhook it is ("" when
    the body says it)."""

    method: str
    path: str
    name: str

    def matches(self, segments: list[str]) -> bool:
        """Whether the path's segments below /v1/{account}/{kind} are this route's; a parameter
        matches any non-empty segment (also its own `{name}`, as in an API Gateway route key)."""
        mine = [part for part in self.path.split("/") if part]
        return len(mine) == len(segments) and all(
            (want.startswith("{") and bool(got)) or want == got for want, got in zip(mine, segments, strict=True)
        )


@dataclass(frozen=True)
class WebhookRequest:
    """The request as it arrived, for the package to read."""

    account_id: str
    route: WebhookRoute
    path_parameters: Mapping[str, str]
    query: Mapping[str, str]
    headers: Mapping[str, str]  # names in lower case
    body: str | None
    is_base64: bool
    started: float  # time.monotonic() at its arrival: a caller lookup's budget counts from it


@dataclass(frozen=True)
class Webhook:
    """A request as its package read it: which webhook (`name`), the credential it presents, and
    its fields (the body's or the query's)."""

    name: str
    credential: str
    fields: dict[str, str]
    request: WebhookRequest


@dataclass(frozen=True)
class WebhookAnswer:
    """The HTTP answer: a JSON body, or an empty one for None."""

    status: int
    body: dict[str, Any] | None = None


class WebhookRefused(Exception):
    """The request is refused with `answer` (a bad body, a missing field): never our failure."""

    def __init__(self, answer: WebhookAnswer) -> None:
        super().__init__(answer.status)
        self.answer = answer


@dataclass(frozen=True)
class CallerLookup:
    """`handle`'s request to look the caller up (an empty phone: a withheld caller id)."""

    phone: str


def _no_caller_answer(found: Mapping[str, str]) -> WebhookAnswer:
    raise TypeError("this PBX declares no caller lookup")


@dataclass(frozen=True)
class PbxWebhooks:
    kind: str  # the account file's pbx.kind, and the path segment after the account
    title: str  # its name in log lines ("Cloud PBX webhook failed")
    routes: tuple[WebhookRoute, ...]
    # The request's credential, name and fields; WebhookRefused for a request it cannot read.
    read: Callable[[WebhookRequest], Webhook]
    # The answer to an unknown account, a wrong credential, another PBX's account, an unknown route.
    refused: WebhookAnswer
    # Parse and record (WebhookRefused for a record it cannot take), or ask for a caller lookup.
    handle: Callable[[Account, Webhook], WebhookAnswer | CallerLookup]
    # The webhooks that ask who is calling (their answer races a ringing phone).
    lookups: frozenset[str] = field(default_factory=frozenset)
    # The caller lookup's result (contact_name, responsible; {} when unknown) as this PBX's answer.
    caller_answer: Callable[[Mapping[str, str]], WebhookAnswer] = _no_caller_answer

    def route(self, segments: list[str]) -> WebhookRoute | None:
        return next((route for route in self.routes if route.matches(segments)), None)
