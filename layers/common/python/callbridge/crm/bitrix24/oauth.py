"""A Bitrix24 local application's OAuth tokens (docs/bitrix24.md, "Local application"): kept in SSM,
refreshed through Bitrix24's OAuth server, shared by every Lambda of the account.

An access token lives an hour; a refresh token about 28 days, and each refresh REPLACES it (the old
one is refused from then on: `invalid_grant`). The tokens are one SecureString parameter,
`{account path}/crm/{name}/oauth/tokens`, claimed at `…/oauth/refreshing` for a refresh, stored
before use and rotated once across every Lambda (callbridge.infra.oauth_tokens).
The first tokens come from `authorize` (the authorization code an administrator's browser gets).
Token values never reach a log line or an error message.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlencode, urlsplit

from callbridge.crm.bitrix24.settings import Bitrix24App, Bitrix24Settings
from callbridge.infra import secrets
from callbridge.infra.http import AddressRefused, HttpPeer, PermanentHttpError, RetryPolicy, TransientHttpError
from callbridge.infra.oauth_tokens import RotatingTokens, clear_cache, code_of

__all__ = ["TokenStore", "Tokens", "authorize", "authorize_url", "clear_cache", "code_of"]

REFRESH_MARGIN_S = 120.0  # an access token this close to its end is refreshed before use
REAUTHORIZE = "authorize again: callbridge bitrix24 authorize"


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float  # epoch seconds
    version: int  # +1 at each refresh: how a waiting Lambda sees that the refresh is done
    member_id: str = ""
    client_endpoint: str = ""  # https://{portal}/rest/: whose tokens these are

    def __repr__(self) -> str:  # a Tokens in a traceback or a log line shows no token
        return f"Tokens(version={self.version}, expires_at={self.expires_at:.0f}, endpoint={self.client_endpoint!r})"

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> Tokens:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class TokenError(TransientHttpError):
    """The account's tokens cannot be had (none stored yet, refused by the OAuth server, another
    Lambda's refresh not seen in time). Transient like any wrong access (api.CONFIG_ERRORS): the
    deliveries wait, and go once the operator authorized again."""

    def __init__(self, reason: str):
        super().__init__("bitrix24", "GET", "oauth/token", reason)


def tokens_name(account_id: str, crm: str) -> str:
    return f"{secrets.account_path(account_id)}/{secrets.crm_secret_name(crm, 'oauth/tokens')}"


def claim_name(account_id: str, crm: str) -> str:
    return f"{secrets.account_path(account_id)}/{secrets.crm_secret_name(crm, 'oauth/refreshing')}"


def _app(settings: Bitrix24Settings) -> Bitrix24App:
    if settings.app is None:
        raise ValueError(f"Bitrix24 {settings.name} has no app section")
    return settings.app


class OAuthServer:
    """Bitrix24's OAuth server (`oauth_url`, https://oauth.bitrix.info): `GET /oauth/token/` with
    grant_type refresh_token or authorization_code, client_id and client_secret. Its answer:
    access_token, refresh_token, expires_in (or expires), member_id, client_endpoint (the portal's
    REST address; `domain` there is the OAuth server's own, oauth.bitrix.info). A refresh spends the
    refresh token AND the access token issued with it."""

    def __init__(self, app: Bitrix24App, *, timeout_s: float = 10.0, trusted_hosts: frozenset[str] = frozenset()):
        self.app = app
        secret = app.client_secret.get_secret_value()
        # One attempt: a refresh whose answer is lost may have rotated the token already; the
        # caller re-reads SSM instead of asking twice with a token that may be spent.
        self.peer = HttpPeer("bitrix24-oauth", app.oauth_url, timeout_s=timeout_s,
                             retry=RetryPolicy(attempts=1), secrets=(secret,), trusted_hosts=trusted_hosts)  # fmt: skip

    def close(self) -> None:
        self.peer.close()

    def grant(self, grant_type: str, **values: str) -> Tokens:
        params = {"grant_type": grant_type, "client_id": self.app.client_id,
                  "client_secret": self.app.client_secret.get_secret_value(), **values}  # fmt: skip
        try:
            response = self.peer.request("GET", "/oauth/token/", params=params)
        except AddressRefused as exc:
            # Not the OAuth server's answer: nothing was sent. The operator is told which setting.
            raise TokenError(
                f"app.oauth_url ({self.app.oauth_url}): the address was refused ({exc.why}), nothing was sent; "
                "an OAuth server of your own on a private address or plain http goes into trusted_hosts"
            ) from None
        except PermanentHttpError as exc:
            # invalid_grant: a spent or revoked refresh token (or code); invalid_client: wrong
            # client_id/secret. Both need the operator; the answer's body is not repeated.
            code = _error_code(exc.body)
            raise TokenError(f"the OAuth server refused the {grant_type} grant ({code}): {REAUTHORIZE}") from None
        try:
            body = response.json()
        except ValueError:
            raise TokenError("the OAuth server's answer is not JSON") from None
        if not isinstance(body, dict) or body.get("error") or not body.get("access_token"):
            refused = body.get("error") if isinstance(body, dict) else None
            raise TokenError(
                f"the OAuth server refused the {grant_type} grant ({refused or 'no token'}): {REAUTHORIZE}"
            )
        lifetime = float(body.get("expires_in") or 3600)
        expires = float(body.get("expires") or time.time() + lifetime)
        return Tokens(str(body["access_token"]), str(body.get("refresh_token") or ""), expires, 0,
                      str(body.get("member_id") or ""), str(body.get("client_endpoint") or ""))  # fmt: skip


def _error_code(body: str) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(body).get("error") or "HTTP error")[:64]
    return "HTTP error"


def check_portal(app: Bitrix24App, tokens: Tokens) -> None:
    """Tokens of another portal are refused: a wrong client_id/code pair (or a member_id that is
    not the account's) must not make us file calls in someone else's Bitrix24."""
    host = urlsplit(tokens.client_endpoint).netloc.lower()
    if host != app.domain.lower():
        raise ValueError(f"the tokens are for {host or 'no portal'}, not {app.domain} (the account's app.portal)")
    if app.member_id and tokens.member_id != app.member_id:
        raise ValueError("the tokens' member_id is not the account's app.member_id")


class TokenStore(RotatingTokens[Tokens]):
    """One account's Bitrix24 tokens in SSM (callbridge.infra.oauth_tokens: stored before use,
    rotated once across every Lambda)."""

    def __init__(
        self,
        account_id: str,
        settings: Bitrix24Settings,
        *,
        timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        after_store: Callable[[Tokens], None] | None = None,
    ):
        self.app = _app(settings)
        self.trusted_hosts = settings.trusted_hosts
        self.timeout_s = timeout_s
        super().__init__(tokens_name(account_id, settings.name), claim_name(account_id, settings.name),
                         loads=Tokens.loads, error=TokenError, label="Bitrix24", reauthorize=REAUTHORIZE,
                         refresh_margin_s=REFRESH_MARGIN_S, sleep=sleep, after_store=after_store)  # fmt: skip

    def renew(self, seen: Tokens) -> Tokens:
        server = OAuthServer(self.app, timeout_s=self.timeout_s, trusted_hosts=self.trusted_hosts)
        try:
            fresh = server.grant("refresh_token", refresh_token=seen.refresh_token)
        finally:
            server.close()
        try:
            check_portal(self.app, fresh)
        except ValueError as exc:
            raise TokenError(str(exc)) from None
        return Tokens(fresh.access_token, fresh.refresh_token or seen.refresh_token, fresh.expires_at,
                      seen.version + 1, fresh.member_id or seen.member_id, fresh.client_endpoint)  # fmt: skip


def authorize_url(app: Bitrix24App) -> str:
    """Where an administrator of the portal authorizes the application: the browser is sent on to
    the application's handler URL with `?code=…` (valid 30 seconds) - `authorize` takes it."""
    return f"{app.portal}/oauth/authorize/?{urlencode({'client_id': app.client_id})}"


def authorize(account_id: str, settings: Bitrix24Settings, code: str, *, timeout_s: float = 10.0) -> Tokens:
    """The first tokens, from an authorization code: exchanged, checked against the account's
    portal (and member_id), stored. ValueError: tokens of another portal."""
    app = _app(settings)
    server = OAuthServer(app, timeout_s=timeout_s, trusted_hosts=settings.trusted_hosts)
    try:
        fresh = server.grant("authorization_code", code=code)
    finally:
        server.close()
    check_portal(app, fresh)
    store = TokenStore(account_id, settings, timeout_s=timeout_s)
    previous = store.read()
    tokens = Tokens(fresh.access_token, fresh.refresh_token, fresh.expires_at,
                    (previous.version if previous else 0) + 1, fresh.member_id, fresh.client_endpoint)  # fmt: skip
    store.store(tokens)
    return tokens


def account_app(account_id: str, crm_name: str | None = None) -> Bitrix24Settings:
    """The account's Bitrix24 (by `name`; default: the first) with its secrets from SSM.
    LookupError: no such Bitrix24, or it calls through a webhook, not an application."""
    from callbridge.core.accounts import get_account
    from callbridge.crm.base import with_secrets

    account = get_account(account_id)
    crms = [c for c in account.settings.crms if isinstance(c, Bitrix24Settings)] if account.has_crms else []
    crm = next((c for c in crms if crm_name in (None, c.name)), None)
    if crm is None:
        raise LookupError(f"account {account_id} has no Bitrix24 {crm_name or ''}".strip())
    if crm.app is None:
        raise LookupError(f"account {account_id}: Bitrix24 {crm.name} calls through its webhook_url (no app section)")
    filled = with_secrets(account.id, crm, force=True)
    assert isinstance(filled, Bitrix24Settings)
    return filled
