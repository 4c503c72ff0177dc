"""OAuth tokens that rotate at every refresh, kept in SSM and shared by every Lambda of an account
(a Bitrix24 local application, an amoCRM integration: crm/bitrix24/oauth.py, crm/kommo/oauth.py).

A refresh REPLACES the refresh token (the old one is refused from then on), so:
- the tokens are one SecureString parameter (JSON with a `version`), read straight from SSM (not
  through the secrets cache) and cached in process;
- a refresh stores the new pair BEFORE the new access token is used: a Lambda that dies after that
  leaves tokens the next one uses as they are. (One that dies between the CRM's answer and the write
  loses the rotated token - a window of one SSM request; the account then needs authorizing again,
  which the error says.)
- only one Lambda refreshes: it first creates the claim parameter with Overwrite=False, which SSM
  refuses to every other one (ParameterAlreadyExists); those wait for the new version in SSM and use
  it. The winner re-reads the tokens after its claim (another one may have refreshed between its
  read and its claim) and deletes the claim when done; a claim older than CLAIM_LEASE_S is a dead
  Lambda's and is taken over.
What differs per CRM - how it refreshes, what its tokens hold besides the pair - is the subclass's
`renew`. Token values never reach a log line or an error message.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from callbridge.infra import aws
from callbridge.infra.observability import logger

CLAIM_LEASE_S = 30.0  # a refresh claim older than this is a dead Lambda's
WAIT_S = 10.0  # how long a Lambda waits for another one's refresh before it gives up (transient)
POLL_S = 0.2

# The tokens last read or written, by parameter name: a warm Lambda asks SSM only when they end.
_cache: dict[str, Any] = {}


class TokenPair(Protocol):
    @property
    def access_token(self) -> str: ...
    @property
    def refresh_token(self) -> str: ...
    @property
    def expires_at(self) -> float: ...  # epoch seconds
    @property
    def version(self) -> int: ...  # +1 at each refresh: how a waiting Lambda sees it is done

    def dumps(self) -> str: ...


T = TypeVar("T", bound=TokenPair)


class RotatingTokens(Generic[T]):
    """One account's tokens of one CRM in SSM under `name`, refreshed under the claim `claim`."""

    def __init__(
        self,
        name: str,
        claim: str,
        *,
        loads: Callable[[str], T],
        error: Callable[[str], Exception],
        label: str,
        reauthorize: str,
        refresh_margin_s: float,
        sleep: Callable[[float], None] = time.sleep,
        after_store: Callable[[T], None] | None = None,
    ) -> None:
        self.name, self.claim = name, claim
        self._loads, self._error = loads, error
        self.label, self.reauthorize, self.refresh_margin_s = label, reauthorize, refresh_margin_s
        self._sleep = sleep
        self._after_store = after_store  # tests: a crash right after the new tokens are stored

    def renew(self, seen: T) -> T:
        """The CRM's new tokens for `seen` (one attempt), version `seen.version + 1`."""
        raise NotImplementedError

    # -- reading ---------------------------------------------------------------------------------
    def read(self) -> T | None:
        ssm = aws.ssm()
        try:
            found = ssm.get_parameter(Name=self.name, WithDecryption=True)
        except ssm.exceptions.ParameterNotFound:
            return None
        tokens = self._loads(found["Parameter"]["Value"])
        _cache[self.name] = tokens
        return tokens

    def current(self) -> T:
        tokens: T | None = _cache.get(self.name) or self.read()
        if tokens is None:
            raise self._error(f"no {self.label} tokens stored for this account yet: {self.reauthorize}")
        return tokens

    def access_token(self) -> str:
        """A token to call with; refreshed first when it ends within the refresh margin."""
        tokens = self.current()
        if tokens.expires_at - time.time() < self.refresh_margin_s:
            tokens = self.refresh(tokens.access_token)
        return tokens.access_token

    # -- writing ---------------------------------------------------------------------------------
    def store(self, tokens: T) -> None:
        aws.ssm().put_parameter(Name=self.name, Value=tokens.dumps(), Type="SecureString", Overwrite=True)
        _cache[self.name] = tokens

    def refresh(self, stale_access: str) -> T:
        """Tokens newer than the ones holding `stale_access`: another Lambda's refresh if it did
        one, else ours, rotated exactly once across every Lambda (the module's docstring)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            tokens = self.read()
            if tokens is None:
                raise self._error(f"no {self.label} tokens stored for this account yet: {self.reauthorize}")
            if tokens.access_token != stale_access and tokens.expires_at - time.time() >= self.refresh_margin_s:
                return tokens  # refreshed by another Lambda since we read them
            if self._claim():
                try:
                    return self._rotate(tokens)
                finally:
                    self._release()
            if time.monotonic() > deadline:
                raise self._error(f"another refresh of the {self.label} tokens did not finish in time")
            self._sleep(POLL_S)

    def _rotate(self, seen: T) -> T:
        again = self.read()
        if again is not None and again.version != seen.version:
            return again  # another Lambda finished its refresh between our read and our claim
        stored = self.renew(seen)
        # Stored before anything uses it: the old refresh token is spent now, the new one exists
        # only in this Lambda's memory until this write.
        self.store(stored)
        logger().info(f"{self.label} tokens refreshed", extra={"version": stored.version})
        if self._after_store is not None:
            self._after_store(stored)
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
            logger().warning(f"taking over a stale {self.label} token refresh claim")
            self._release()
        return False

    def _release(self) -> None:
        ssm = aws.ssm()
        with contextlib.suppress(ssm.exceptions.ParameterNotFound):
            ssm.delete_parameter(Name=self.claim)


def code_of(pasted: str) -> str:
    """The authorization code from what the operator pasted: the code itself, or the whole URL the
    browser was sent on to."""
    from urllib.parse import parse_qs, urlsplit

    text = pasted.strip()
    if "code=" in text:
        found: dict[str, Any] = parse_qs(urlsplit(text).query or text)
        values = found.get("code") or [""]
        return str(values[0]).strip()
    return text


def clear_cache() -> None:
    _cache.clear()
