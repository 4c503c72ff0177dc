"""The runtime view of an account: the few fields every webhook needs, read with one GetItem and
cached per warm Lambda. The full, validated configuration lives in `callbridge.core.config`.

Webhook tokens are checked against SHA-256 digests kept on the account item, so that the contact
path (a ringing phone) needs neither SSM nor a second AWS client. The tokens themselves live only in
SSM Parameter Store; they are 16+ characters of random text, for which a digest reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from callbridge.infra.refresh import RefreshBudget
from callbridge.store import keys
from callbridge.store.accounts import get_account_item
from callbridge.store.keys import ACCOUNT_ID as ACCOUNT_ID

if TYPE_CHECKING:
    from callbridge.core.config import AccountConfig

_CACHE_SECONDS = 60.0
# An account that is not there is remembered briefly too: otherwise every request for a made-up id
# costs a DynamoDB read (a cheap flood, and a timing difference against a known account with a wrong
# key). An apply in this container forgets it at once (clear_account_cache, features/admin.py); an
# account applied from elsewhere answers at the latest this long after a request that missed it.
_MISSING_SECONDS = 5.0
# Bounded: a flood of random ids must not grow a warm Lambda's memory without end.
_MISSING_MAX = 4096
# A token that does not match may be a freshly rotated one this warm Lambda has not seen yet: the
# account is re-read then, within a budget per account (infra/refresh.py).
_refresh = RefreshBudget()


class UnknownAccount(LookupError):
    """No such account (or a malformed id). Callers answer it exactly like a wrong token, so that
    nobody can probe which accounts exist."""


@dataclass(frozen=True)
class Account:
    id: str
    phone_region: str
    timezone: str
    pbx_kind: str
    config: dict[str, Any]  # the stored config as read; only `settings` below interprets it
    webhook_token_digests: tuple[str, ...] = ()
    version: str = ""  # when the config was applied: a new version is parsed again
    # phone_region's calling code ("7"), stored by the apply: core/phones.py known_e164. Empty on
    # an account applied before it was stored; such an account's numbers are simply parsed.
    phone_country_code: str = ""

    @property
    def has_crms(self) -> bool:
        """Cheap (no parsing): the contact path asks it on every ringing call."""
        return bool(self.config.get("crms"))

    @cached_property
    def settings(self) -> AccountConfig:
        """The typed, validated account config, parsed once per warm container and version. Its
        secret fields hold placeholders: the secrets themselves live in SSM (infra.secrets)."""
        key = (self.id, self.version)
        hit = _parsed.get(self.id)
        if hit is not None and hit[0] == key:
            return hit[1]
        from callbridge.core.config import AccountConfig

        parsed = AccountConfig.from_stored(self.id, self.config)
        _parsed[self.id] = (key, parsed)
        return parsed

    def accepts(self, presented: str) -> bool:
        """Constant-time check of a presented webhook token against every valid one (the current
        and, during a rotation, the previous), with no early exit on the first match."""
        given = token_digest(presented).encode()
        result = False
        for digest in self.webhook_token_digests:
            result |= hmac.compare_digest(given, digest.encode())
        return result and bool(presented)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


account_key = keys.account_key  # kept for importers; the layout is store/keys.py's


_cache: dict[str, tuple[float, Account]] = {}
_parsed: dict[str, tuple[tuple[str, str], AccountConfig]] = {}
_missing: dict[str, float] = {}  # account id -> until when it is known not to exist
_missing_lock = threading.Lock()  # the local runtime serves requests on several threads


def _remember_missing(account_id: str, now: float) -> None:
    with _missing_lock:
        if len(_missing) >= _MISSING_MAX:
            for key in [k for k, until in _missing.items() if until <= now]:
                del _missing[key]
        while len(_missing) >= _MISSING_MAX:  # all still fresh: the oldest goes first
            del _missing[next(iter(_missing))]
        _missing.pop(account_id, None)  # re-inserted last: the order stays oldest first
        _missing[account_id] = now + _MISSING_SECONDS


def get_account(account_id: str, *, fast: bool = False, refresh: bool = False) -> Account:
    if not ACCOUNT_ID.match(account_id):
        raise UnknownAccount(account_id)
    hit = _cache.get(account_id)
    now = time.monotonic()
    if hit and hit[0] > now and not refresh:
        return hit[1]
    if _missing.get(account_id, 0.0) > now and not refresh:
        raise UnknownAccount(account_id)
    data = get_account_item(account_id, fast=fast)
    if data is None:
        _remember_missing(account_id, now)
        raise UnknownAccount(account_id)
    account = Account(
        id=account_id,
        phone_region=str(data.get("phone_region") or ""),
        timezone=str(data.get("timezone") or "UTC"),
        pbx_kind=str(data.get("pbx_kind") or ""),
        config=data.get("config") or {},
        webhook_token_digests=tuple(str(d) for d in data.get("webhook_token_digests") or ()),
        version=str(data.get("updated_at") or ""),
        phone_country_code=str(data.get("phone_country_code") or ""),
    )
    _cache[account_id] = (now + _CACHE_SECONDS, account)
    if account_id in _missing:
        with _missing_lock:
            _missing.pop(account_id, None)
    return account


def authenticate(account_id: str, presented: str, *, fast: bool = False) -> Account:
    """The account whose webhook token `presented` is; UnknownAccount for a wrong token too."""
    account = get_account(account_id, fast=fast)
    if account.accepts(presented):
        return account
    if _refresh.allow(account_id):
        account = get_account(account_id, fast=fast, refresh=True)
        if account.accepts(presented):
            return account
    raise UnknownAccount(account_id)


def clear_account_cache() -> None:
    """Forget every account read, and every one found missing: what an apply calls, so that an
    account applied a moment ago answers at once in this container."""
    _cache.clear()
    with _missing_lock:
        _missing.clear()
    _parsed.clear()
    _refresh.clear()
