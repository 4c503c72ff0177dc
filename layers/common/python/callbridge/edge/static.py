"""The API's static answers, which read nothing and need no permission: GET /health (liveness), and
the retailCRM module's `logo` and `accountUrl` (docs/retailcrm.md, "The module's logo and page").

retailCRM shows an integration module with the image at its `logo` URL and links the module to its
`accountUrl`; both are fetched by the retailCRM user's browser, without credentials. So both are
static: they read no account, no secret and no table, and answer the same for every well-formed
account id (the page must not tell a stranger which accounts exist). Served by the deployment
itself, so that a registered module never points at a host the operator does not control.

- GET /v1/retailcrm/logo.svg: the logo (SVG: retailCRM's example is `logo.svg`, and its marketplace takes
  module logos as SVG only).
- GET /v1/{account}/retailcrm/about: a page about this integration for this account: what CallBridge
  does in retailCRM, the addresses retailCRM calls, and where the operator changes the settings.
"""

from __future__ import annotations

import html

from callbridge.edge.router import JSON, Response, Router
from callbridge.store.keys import ACCOUNT_ID

LOGO_PATH = "/v1/retailcrm/logo.svg"
ABOUT_PATH = "/v1/{account}/retailcrm/about"  # the module's accountUrl (crm/retailcrm/registration.py)
SVG = "image/svg+xml"
HTML = "text/html; charset=utf-8"
# The logo is a file of ours that never runs script; the page links nothing but the logo.
_HEADERS = {
    "Cache-Control": "public, max-age=3600",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'",
}

LOGO = """<svg xmlns="http://www.w3.org/2000/svg" width="128" height="128" viewBox="0 0 128 128">
<title>CallBridge</title>
<rect width="128" height="128" rx="24" fill="#1d4e89"/>
<path d="M20 84 Q64 28 108 84" fill="none" stroke="#ffffff" stroke-width="8" stroke-linecap="round"/>
<path d="M36 84 V100 M64 56 V100 M92 84 V100" stroke="#ffffff" stroke-width="6" stroke-linecap="round"/>
<path d="M14 100 H114" stroke="#7fc8f8" stroke-width="8" stroke-linecap="round"/>
</svg>
"""

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>CallBridge telephony: account {account}</title>
<style>body{{font-family:sans-serif;max-width:44em;margin:2em auto;line-height:1.5}}code{{background:#eee}}</style>
</head>
<body>
<h1><img src="../../retailcrm/logo.svg" alt="" width="48" height="48"> CallBridge telephony</h1>
<p>This telephony module connects account <code>{account}</code> of CallBridge, an open-source bridge
between cloud PBXs and CRMs, with this retailCRM.</p>
<ul>
<li>Every call, answered or missed, is uploaded to the call history of the client's card, with its
recording when the PBX keeps one.</li>
<li>A manager whose phone rings sees the call card; a click on a phone number makes the PBX ring the
manager's phone and then dial the client.</li>
<li>Managers' statuses (free, busy, dinner, break) decide who gets calls routed to them.</li>
</ul>
<p>retailCRM reaches this account at <code>{make_call}</code> (click-to-call) and
<code>{user_status}</code> (statuses).</p>
<p>The module's settings are read-only in retailCRM: extension codes, shops and numbers come from
the account file of <code>{account}</code>. Your CallBridge operator changes them there and runs
<code>callbridge accounts apply</code>, which updates this module.</p>
</body>
</html>
"""


def about_page(account: str) -> str:
    safe = html.escape(account)
    return _PAGE.format(
        account=safe,
        make_call=f"/v1/{safe}/retailcrm/make-call",
        user_status=f"/v1/{safe}/retailcrm/user-status",
    )


def static_app() -> Router:
    app = Router()

    @app.get("/health")
    def health() -> Response[dict[str, str]]:
        return Response(200, JSON, {"status": "ok"})

    @app.get("/v1/retailcrm/logo.svg")
    def logo() -> Response[str]:
        return Response(200, SVG, LOGO, headers=dict(_HEADERS))

    @app.get("/v1/<account>/retailcrm/about")
    def about(account: str) -> Response[str]:
        if not ACCOUNT_ID.match(account):
            return Response(404, HTML, "<!doctype html><title>Not found</title>", headers=dict(_HEADERS))
        return Response(200, HTML, about_page(account), headers=dict(_HEADERS))

    return app
