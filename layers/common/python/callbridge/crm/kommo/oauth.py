"""An amoCRM integration's OAuth tokens (docs/kommo.md, "OAuth"): kept in SSM, refreshed at the
account's own `POST /oauth2/access_token`, shared by every Lambda of the account.

An access token lives a day; a refresh token three months, and each refresh REPLACES it (the old
one is refused from then on). The tokens are one SecureString parameter below the account's CRM
(`crm/{name}/oauth/tokens`, claimed at `…/oauth/refreshing`: the IAM the functions already have),
stored before use and rotated once across every Lambda (callbridge.infra.oauth_tokens).
Token values never reach a log line or an error message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

from callbridge.crm.kommo.limits import bucket
from callbridge.crm.kommo.settings import KommoApp, KommoSettings
from callbridge.infra import secrets
from callbridge.infra.http import (
    AddressRefused,
    HttpPeer,
    PermanentHttpError,
    RetryPolicy,
    TransientHttpError,
)
from callbridge.infra.oauth_tokens import RotatingTokens, clear_cache, code_of

__all__ = ["TokenStore", "Tokens", "authorize", "authorize_url", "clear_cache", "code_of", "grant"]

REFRESH_MARGIN_S = 300.0  # an access token this close to its end is refreshed before use
REAUTHORIZE = "authorize again: callbridge kommo authorize"
PATH = "/oauth2/access_token"


@dataclass(frozen=True, slots=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_at: float  # epoch seconds
    version: int  # +1 at each refresh: how a waiting Lambda sees that the refresh is done

    def __repr__(self) -> str:  # a Tokens in a traceback or a log line shows no token
        return f"Tokens(version={self.version}, expires_at={self.expires_at:.0f})"

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> Tokens:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class TokenError(TransientHttpError):
    """The account's tokens cannot be had: transient like any wrong access (the deliveries wait,
    and go once the operator authorized again)."""

    def __init__(self, reason: str):
        super().__init__("kommo", "POST", PATH, reason)


def tokens_name(account_id: str, crm: str) -> str:
    return f"{secrets.account_path(account_id)}/{secrets.crm_secret_name(crm, 'oauth/tokens')}"


def claim_name(account_id: str, crm: str) -> str:
    return f"{secrets.account_path(account_id)}/{secrets.crm_secret_name(crm, 'oauth/refreshing')}"


def _app(settings: KommoSettings) -> KommoApp:
    if settings.app is None:
        raise ValueError(f"amoCRM {settings.name} has no app section")
    return settings.app


def grant(settings: KommoSettings, grant_type: str, *, timeout_s: float = 10.0, **values: str) -> Tokens:
    """One exchange at the account's OAuth endpoint (authorization_code or refresh_token). One
    attempt: a refresh whose answer is lost may have rotated the token already; the caller re-reads
    SSM instead of asking twice with a token that may be spent."""
    app = _app(settings)
    secret = app.client_secret.get_secret_value()
    # The token endpoint is on the account's host and counts towards its 7 requests a second.
    peer = HttpPeer("kommo-oauth", settings.base_url, timeout_s=timeout_s, retry=RetryPolicy(attempts=1),
                    rate_limiter=bucket(settings.host), secrets=(secret, *values.values()), trusted_hosts=settings.trusted_hosts)  # fmt: skip
    body = {"client_id": app.client_id, "client_secret": secret, "grant_type": grant_type,
            "redirect_uri": app.redirect_uri, **values}  # fmt: skip
    try:
        response = peer.request("POST", PATH, json=body)
    except AddressRefused as exc:
        raise TokenError(
            f"base_url ({settings.base_url}): the address was refused ({exc.why}), nothing was sent"
        ) from None
    except PermanentHttpError as exc:
        # A spent or revoked refresh token (or code), a wrong secret: the operator must act. The
        # answer's body is not repeated (it may echo what we sent).
        raise TokenError(f"amoCRM refused the {grant_type} grant (HTTP {exc.status}): {REAUTHORIZE}") from None
    finally:
        peer.close()
    try:
        answer = response.json()
    except ValueError:
        raise TokenError("the OAuth answer is not JSON") from None
    if not isinstance(answer, dict) or not answer.get("access_token") or not answer.get("refresh_token"):
        raise TokenError(f"amoCRM answered the {grant_type} grant without tokens: {REAUTHORIZE}")
    lifetime = float(answer.get("expires_in") or 86400)
    return Tokens(str(answer["access_token"]), str(answer["refresh_token"]), time.time() + lifetime, 0)


class TokenStore(RotatingTokens[Tokens]):
    """One account's amoCRM tokens in SSM (callbridge.infra.oauth_tokens: stored before use,
    rotated once across every Lambda)."""

    def __init__(
        self,
        account_id: str,
        settings: KommoSettings,
        *,
        timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        _app(settings)
        self.settings = settings
        self.timeout_s = timeout_s
        super().__init__(tokens_name(account_id, settings.name), claim_name(account_id, settings.name),
                         loads=Tokens.loads, error=TokenError, label="amoCRM", reauthorize=REAUTHORIZE,
                         refresh_margin_s=REFRESH_MARGIN_S, sleep=sleep)  # fmt: skip

    def renew(self, seen: Tokens) -> Tokens:
        fresh = grant(self.settings, "refresh_token", timeout_s=self.timeout_s, refresh_token=seen.refresh_token)
        return Tokens(fresh.access_token, fresh.refresh_token, fresh.expires_at, seen.version + 1)


def authorize_url(settings: KommoSettings) -> str:
    """Where an administrator of the account grants the integration access: amoCRM sends the
    browser on to the redirect URL with `?code=…` (valid 20 minutes) - `authorize` takes it."""
    app = _app(settings)
    return f"{settings.base_url}/oauth?{urlencode({'client_id': app.client_id, 'mode': 'post_message'})}"


def authorize(account_id: str, settings: KommoSettings, code: str, *, timeout_s: float = 10.0) -> Tokens:
    """The first tokens, from an authorization code: exchanged at the account's own host and stored."""
    fresh = grant(settings, "authorization_code", timeout_s=timeout_s, code=code)
    store = TokenStore(account_id, settings, timeout_s=timeout_s)
    previous = store.read()
    tokens = Tokens(
        fresh.access_token, fresh.refresh_token, fresh.expires_at, (previous.version if previous else 0) + 1
    )
    store.store(tokens)
    return tokens
