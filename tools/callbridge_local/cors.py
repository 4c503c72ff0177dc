"""API Gateway's CORS for an HTTP API, as its `x-amazon-apigateway-cors` body extension configures it
(what SAM writes for an HttpApi's CorsConfiguration; template.yaml's comes from CrossOriginCallers).

What API Gateway documents for HTTP APIs (docs/kommo.md §4 names the caller, the Kommo widget):

- it answers a preflight itself, for any path, whether or not a route has OPTIONS: a request is a
  preflight when it is OPTIONS and carries both Origin and Access-Control-Request-Method;
- it adds the configured headers to an integration's response to a request with an allowed Origin;
- it drops the CORS headers an integration returns, so only the configuration speaks;
- an origin it does not allow gets no CORS header at all (the browser then refuses the answer).

Allowed origins are exact, or `*` (any), or `https://*` / `http://*` (any of that scheme); API
Gateway has no subdomain wildcards. The requested method and headers are not compared here: API
Gateway answers with its configured lists and the browser compares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from callbridge_local.httpapi import HttpResponse
from callbridge_local.provision import ProvisionedStack
from callbridge_local.template import HTTP_API, TemplateError

EXTENSION = "x-amazon-apigateway-cors"
_LISTS = {
    "allowOrigins": "allow_origins",
    "allowMethods": "allow_methods",
    "allowHeaders": "allow_headers",
    "exposeHeaders": "expose_headers",
}
_KEYS = frozenset({*_LISTS, "maxAge", "allowCredentials"})
_WILDCARD = "*"
_SCHEME_WILDCARDS = ("https://*", "http://*")


@dataclass(frozen=True)
class CorsConfig:
    allow_origins: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age: int | None = None
    allow_credentials: bool = False

    @classmethod
    def parse(cls, value: Any, where: str) -> CorsConfig:
        """The configuration from the extension's value, intrinsics already resolved."""
        if not isinstance(value, dict):
            raise TemplateError(f"{where}: {EXTENSION} must be a mapping, got {value!r}")
        unknown = sorted(set(value) - _KEYS)
        if unknown:
            raise TemplateError(f"{where}: {EXTENSION} {', '.join(unknown)} is not supported by the local runtime")
        lists: dict[str, tuple[str, ...]] = {}
        for key, attribute in _LISTS.items():
            items = value.get(key, [])
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise TemplateError(f"{where}: {EXTENSION} {key} must be a list of strings, got {items!r}")
            lists[attribute] = tuple(items)
        max_age = value.get("maxAge")
        if max_age is not None and (isinstance(max_age, bool) or not str(max_age).lstrip("-").isdigit()):
            raise TemplateError(f"{where}: {EXTENSION} maxAge must be a number of seconds, got {max_age!r}")
        credentials = value.get("allowCredentials", False)
        if not isinstance(credentials, bool):
            raise TemplateError(f"{where}: {EXTENSION} allowCredentials must be true or false, got {credentials!r}")
        return cls(**lists, max_age=None if max_age is None else int(max_age), allow_credentials=credentials)

    def allowed_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin value for ``origin``; None when it is not allowed."""
        if not origin:
            return None
        folded = origin.casefold()
        if any(folded == allowed.casefold() for allowed in self.allow_origins):
            return origin
        if any(folded.startswith(wildcard[:-1]) for wildcard in self.allow_origins if wildcard in _SCHEME_WILDCARDS):
            return origin
        if _WILDCARD in self.allow_origins:
            return _WILDCARD
        return None

    def preflight(self, origin: str | None) -> HttpResponse:
        """API Gateway's own answer to a preflight: 204, with the configuration for an allowed origin."""
        allowed = self.allowed_origin(origin)
        if allowed is None:
            return HttpResponse(204)
        headers = [("access-control-allow-origin", allowed)]
        if self.allow_methods:
            headers.append(("access-control-allow-methods", ",".join(self.allow_methods)))
        if self.allow_headers:
            headers.append(("access-control-allow-headers", ",".join(self.allow_headers)))
        if self.max_age is not None:
            headers.append(("access-control-max-age", str(self.max_age)))
        headers.extend(self._common())
        return HttpResponse(204, headers)

    def decorate(self, response: HttpResponse, origin: str | None) -> HttpResponse:
        """An integration's response as API Gateway sends it: its own CORS headers dropped, the
        configured ones added for an allowed origin."""
        headers = [(name, value) for name, value in response.headers if not is_cors_header(name)]
        allowed = self.allowed_origin(origin)
        if allowed is not None:
            headers.append(("access-control-allow-origin", allowed))
            headers.extend(self._common())
            if self.expose_headers:
                headers.append(("access-control-expose-headers", ",".join(self.expose_headers)))
        return HttpResponse(response.status, headers, response.body)

    def _common(self) -> list[tuple[str, str]]:
        return [("access-control-allow-credentials", "true")] if self.allow_credentials else []


def is_cors_header(name: str) -> bool:
    return name.lower().startswith("access-control-")


def is_preflight(method: str, headers: Sequence[tuple[str, str]]) -> bool:
    names = {name.lower() for name, _ in headers}
    return method == "OPTIONS" and "origin" in names and "access-control-request-method" in names


def api_cors(stack: ProvisionedStack) -> dict[str, CorsConfig]:
    """Per API id, the CORS of each HTTP API of the stack that has one. The extension is resolved
    like any property the runtime reads: SAM wraps it in the CorsConfiguration's Fn::If, whose
    AWS::NoValue branch leaves the API without CORS."""
    found: dict[str, CorsConfig] = {}
    for resource in stack.template.resources_of_type(HTTP_API):
        body = resource.properties.get("Body")
        if not stack.created(resource.logical_id) or not isinstance(body, dict) or EXTENSION not in body:
            continue
        # Resolved inside a mapping, so that an AWS::NoValue removes the key as CloudFormation would.
        resolved = stack.resolve(resource.logical_id, {EXTENSION: body[EXTENSION]})
        if EXTENSION in resolved:
            where = f"resource {resource.logical_id}: Body"
            found[stack.api_id(resource.logical_id)] = CorsConfig.parse(resolved[EXTENSION], where)
    return found
