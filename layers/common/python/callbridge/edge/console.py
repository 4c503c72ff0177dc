"""The operator console's page and scripts (docs/console.md), served by the deployment itself:

- GET /console            the page (console_page/index.html)
- GET /console/{asset}    its scripts and style sheet, by name (nothing else in the folder is served)

Static files shipped in the layer beside this module (`console_page/`), read once per warm container.
They read no account, no secret and no table: the page asks the JSON API (edge/calls.py,
edge/console_api.py) with the API key the operator types, which the page keeps in the tab's
session storage and sends in the Authorization header only.

The Content-Security-Policy says what the page may load, and it is nothing from outside the
deployment: scripts, styles and API calls from this API only, no inline script, and recordings from
this API, whose playback link redirects to the deployment's own recordings bucket (its presigned
URL's origin is allowed for media, computed with the function's own S3 client).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from callbridge.edge.router import Response, Router
from callbridge.infra import aws
from callbridge.infra.observability import logger
from callbridge.infra.settings import get_settings

HTML = "text/html; charset=utf-8"
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "dom.js": "text/javascript; charset=utf-8",
    "screens.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
PAGE = "index.html"

app = Router()


@cache
def _file(name: str) -> str:
    return resources.files("callbridge.edge").joinpath("console_page", name).read_text(encoding="utf-8")


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


@cache
def media_sources() -> tuple[str, ...]:
    """Where the page's audio player may load a recording from besides this API: the public base
    URL of the playback links (when it is another host) and the origin of the recordings bucket's
    presigned URLs, as this deployment's S3 client signs them (a local signature, no request)."""
    found: list[str] = []
    settings = get_settings()
    if settings.public_base_url:
        found.append(_origin(settings.public_base_url) or "")
    if settings.recordings_bucket:
        try:
            signed = aws.s3().generate_presigned_url(
                "get_object", Params={"Bucket": settings.recordings_bucket, "Key": "console"}, ExpiresIn=60
            )
            found.append(_origin(str(signed)) or "")
        except Exception:
            # Without the bucket's origin the player cannot follow the playback redirect; the rest
            # of the page works, and the log says why.
            logger().exception("could not work out the recordings bucket's address for the console")
    return tuple(dict.fromkeys(o for o in found if o))


def policy() -> str:
    media = " ".join(("'self'", *media_sources()))
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        f"media-src {media}; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": policy(),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        # A new deployment's page and scripts are taken at once: they are small.
        "Cache-Control": "no-cache",
    }


@app.get("/console")
def page() -> Response[str]:
    return Response(200, HTML, _file(PAGE), headers=_headers())


@app.get("/console/<asset>")
def asset(asset: str) -> Response[str]:
    content_type = ASSETS.get(asset)
    if content_type is None:
        return Response(404, "text/plain; charset=utf-8", "Not found", headers=_headers())
    return Response(200, content_type, _file(asset), headers=_headers())


@app.not_found
def not_found(error: Exception) -> Response[str]:
    return Response(404, "text/plain; charset=utf-8", "Not found", headers=_headers())


def resolve(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
