"""An amoCRM integration's OAuth tokens (docs/kommo.md, "OAuth"): kept in SSM, refreshed at the
account's own `POST /oauth2/access_token`, shared by every Lambda of the account.

An access token lives a day; a refresh token three months, and each refresh REPLACES it (the old
one is refused from then on). The discipline is Bitrix24's (callbridge.crm.bitrix24.oauth), which a
CRM package may not import (packages are independent): the same SSM names below the account's CRM
(`crm/{name}/oauth/tokens`, `…/oauth/refreshing`, the IAM the functions already have for them):
- the tokens are one SecureString parameter (JSON with a `version`), read straight from SSM and
  cached in process;
- a refresh stores the new pair BEFORE the new access token is used;
- only one Lambda refreshes: it creates `…/oauth/refreshing` with Overwrite=False, which SSM refuses
  to every other one; those wait for the new version and use it. The winner re-reads the tokens
  after its claim and deletes the claim when done; a claim older than CLAIM_LEASE_S is a dead
  Lambda's and is taken over.
Token values never reach a log line or an error message.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from callbridge.crm.kommo.limits import bucket
from callbridge.crm.kommo.settings import KommoApp, KommoSettings
from callbridge.infra import aws, secrets
from callbridge.infra.http import (
    AddressRefused,
    HttpPeer,
    PermanentHttpError,
    RetryPolicy,
    TransientHttpError,
)
from callbridge.infra.observability import logger

REFRESH_MARGIN_S = 300.0  # an access token this close to its end is refreshed before use
CLAIM_LEASE_S = 30.0
WAIT_S = 10.0
POLL_S = 0.2
REAUTHORIZE = "authorize again: callbridge kommo authorize"
PATH = "/oauth2/access_token"

_cache: dict[str, Tokens] = {}


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


class TokenStore:
    """One account's amoCRM tokens in SSM (see the module's docstring)."""

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
        self.name = tokens_name(account_id, settings.name)
        self.claim = claim_name(account_id, settings.name)
        self.timeout_s = timeout_s
        self._sleep = sleep

    def read(self) -> Tokens | None:
        ssm = aws.ssm()
        try:
            found = ssm.get_parameter(Name=self.name, WithDecryption=True)
        except ssm.exceptions.ParameterNotFound:
            return None
        tokens = Tokens.loads(found["Parameter"]["Value"])
        _cache[self.name] = tokens
        return tokens

    def current(self) -> Tokens:
        tokens = _cache.get(self.name) or self.read()
        if tokens is None:
            raise TokenError(f"no amoCRM tokens stored for this account yet: {REAUTHORIZE}")
        return tokens

    def access_token(self) -> str:
        tokens = self.current()
        if tokens.expires_at - time.time() < REFRESH_MARGIN_S:
            tokens = self.refresh(tokens.access_token)
        return tokens.access_token

    def store(self, tokens: Tokens) -> None:
        aws.ssm().put_parameter(Name=self.name, Value=tokens.dumps(), Type="SecureString", Overwrite=True)
        _cache[self.name] = tokens

    def refresh(self, stale_access: str) -> Tokens:
        """Tokens newer than the ones holding `stale_access`: another Lambda's refresh if it did
        one, else ours, rotated exactly once across every Lambda."""
        deadline = time.monotonic() + WAIT_S
        while True:
            tokens = self.read()
            if tokens is None:
                raise TokenError(f"no amoCRM tokens stored for this account yet: {REAUTHORIZE}")
            if tokens.access_token != stale_access and tokens.expires_at - time.time() >= REFRESH_MARGIN_S:
                return tokens  # refreshed by another Lambda since we read them
            if self._claim():
                try:
                    return self._rotate(tokens)
                finally:
                    self._release()
            if time.monotonic() > deadline:
                raise TokenError("another refresh of the amoCRM tokens did not finish in time")
            self._sleep(POLL_S)

    def _rotate(self, seen: Tokens) -> Tokens:
        again = self.read()
        if again is not None and again.version != seen.version:
            return again  # another Lambda finished its refresh between our read and our claim
        fresh = grant(self.settings, "refresh_token", timeout_s=self.timeout_s, refresh_token=seen.refresh_token)
        stored = Tokens(fresh.access_token, fresh.refresh_token, fresh.expires_at, seen.version + 1)
        # Stored before anything uses it: the old refresh token is spent now.
        self.store(stored)
        logger().info("amoCRM tokens refreshed", extra={"version": stored.version})
        return stored

    def _claim(self) -> bool:
        ssm = aws.ssm()
        try:
            ssm.put_parameter(Name=self.claim, Value=json.dumps({"at": time.time()}), Type="String", Overwrite=False)
            return True
        except ssm.exceptions.ParameterAlreadyExists:
            pass
        try:
            held = json.loads(ssm.get_parameter(Name=self.claim)["Parameter"]["Value"])
        except ssm.exceptions.ParameterNotFound:
            return False  # released meanwhile: the next round reads the new tokens
        if time.time() - float(held.get("at") or 0) > CLAIM_LEASE_S:
            logger().warning("taking over a stale amoCRM token refresh claim")
            self._release()
        return False

    def _release(self) -> None:
        ssm = aws.ssm()
        with contextlib.suppress(ssm.exceptions.ParameterNotFound):
            ssm.delete_parameter(Name=self.claim)


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


def code_of(pasted: str) -> str:
    """The code from what the operator pasted: the code itself, or the whole redirected URL."""
    text = pasted.strip()
    if "code=" in text:
        found: dict[str, Any] = parse_qs(urlsplit(text).query or text)
        values = found.get("code") or [""]
        return str(values[0]).strip()
    return text


def clear_cache() -> None:
    _cache.clear()
