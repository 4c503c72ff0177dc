"""The runtime view of an account: the few fields every webhook needs, read with one GetItem (for a
caller lookup, one BatchGetItem that reads the caller's directory entry too) and cached per warm
Lambda. The full, validated configuration lives in `callbridge.core.config`.

Webhook tokens are checked against SHA-256 digests kept on the account item, so that the contact
path (a ringing phone) needs neither SSM nor a second AWS client. The tokens themselves live only in
SSM Parameter Store; they are 16+ characters of random text, for which a digest reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

from callbridge.infra.refresh import RefreshBudget
from callbridge.infra.settings import get_settings
from callbridge.store import keys
from callbridge.store.accounts import ContactRead, get_account_and_contact, get_account_item
from callbridge.store.keys import ACCOUNT_ID as ACCOUNT_ID

if TYPE_CHECKING:
    from callbridge.core.config import AccountConfig

# How long an account read (or found missing) is trusted: settings.credential_cache_s, a few
# seconds, since the item holds the webhook token digests and the version of the account's
# credentials in SSM (infra/secrets.py): a removed credential stops working that long after the
# apply at the latest. An account not there is remembered as long: otherwise every request for a
# made-up id would cost a DynamoDB read that a known account's wrong key does not (a timing
# difference that tells which accounts exist). An apply in this container forgets both at once
# (clear_account_cache, features/admin.py).
# Bounded: a flood of random ids must not grow a warm Lambda's memory without end.
_MISSING_MAX = 4096
# A credential that does not match may be a freshly rotated one this warm Lambda has not seen yet:
# the account is re-read then (recheck), within a budget per account id (infra/refresh.py), the
# same for an id found missing, so that a refusal costs the same reads either way.
_refresh = RefreshBudget()
# Requests that recheck the same account wait for one re-read and share it (a burst of webhooks
# right after a rotation costs one read, and none is refused for want of budget). Striped: ids
# from outside must not grow a table of locks.
_recheck_locks = tuple(threading.Lock() for _ in range(64))


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
    # When this container read it (time.monotonic()): a recheck re-reads only what is older than
    # the account it was given.
    read_at: float = field(default=0.0, compare=False)
    # Read from the store by the very lookup that returned it (then a recheck has nothing newer).
    fresh: bool = field(default=False, compare=False)

    @property
    def has_crms(self) -> bool:
        """Cheap (no parsing): the contact path asks it on every ringing call."""
        return bool(self.config.get("crms"))

    @property
    def recordings_allowed_ips(self) -> list[str]:
        """Cheap (no parsing): the recordings URL asks it on every request, and a cold start that
        parsed the whole config for it took twice the floor. The apply stored it validated
        (core/config.py RecordingsSettings)."""
        return [str(ip) for ip in (self.config.get("recordings") or {}).get("allowed_ips") or ()]

    @property
    def recordings_serve_direct(self) -> bool:
        """Cheap (no parsing), as recordings_allowed_ips."""
        return bool((self.config.get("recordings") or {}).get("serve_direct"))

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


@dataclass(frozen=True)
class Lookup:
    """One look at an account: what it was (None: there is no such account) and whether it was read
    from the store by this very look (then a recheck has nothing newer to read)."""

    id: str
    account: Account | None
    read_at: float
    fresh: bool
    # The caller's directory entry read with the account (authenticate_caller): (E.164, item or
    # None), or None when it was not read.
    contact: ContactRead | None = None

    @classmethod
    def of(cls, account: Account) -> Lookup:
        """The look that gave `account`."""
        return cls(account.id, account, account.read_at, account.fresh)


_cache: dict[str, Account] = {}
_parsed: dict[str, tuple[tuple[str, str], AccountConfig]] = {}
_missing: dict[str, float] = {}  # account id -> when it was found not to exist
_missing_lock = threading.Lock()  # the local runtime serves requests on several threads


def _remember_missing(account_id: str, now: float) -> None:
    ttl = _ttl()
    with _missing_lock:
        if len(_missing) >= _MISSING_MAX:
            for key in [k for k, read_at in _missing.items() if read_at + ttl <= now]:
                del _missing[key]
        while len(_missing) >= _MISSING_MAX:  # all still fresh: the oldest goes first
            del _missing[next(iter(_missing))]
        _missing.pop(account_id, None)  # re-inserted last: the order stays oldest first
        _missing[account_id] = now


def _ttl() -> float:
    return float(get_settings().credential_cache_s)


def lookup(account_id: str, *, fast: bool = False, refresh: bool = False, caller: str | None = None) -> Lookup:
    """The account as cached (for settings.credential_cache_s), or as read now. A malformed id is
    answered like a missing account without a read: it cannot name one. `caller`: an E.164 key
    whose Contacts item a read of the account reads too, in the same request (the Lookup's
    `contact`); a cached account reads nothing more."""
    now = time.monotonic()
    if not ACCOUNT_ID.match(account_id):
        return Lookup(account_id, None, now, fresh=True)
    ttl = _ttl()
    if not refresh:
        hit = _cache.get(account_id)
        if hit is not None and hit.read_at + ttl > now:
            return Lookup(account_id, hit, hit.read_at, fresh=False)
        missing_at = _missing.get(account_id)
        if missing_at is not None and missing_at + ttl > now:
            return Lookup(account_id, None, missing_at, fresh=False)
    contact: ContactRead | None = None
    if caller is None:
        data = get_account_item(account_id, fast=fast)
    else:
        data, contact = get_account_and_contact(account_id, caller, fast=fast)
    if data is None:
        _cache.pop(account_id, None)
        _remember_missing(account_id, now)
        return Lookup(account_id, None, now, fresh=True, contact=contact)
    account = Account(
        id=account_id,
        phone_region=str(data.get("phone_region") or ""),
        timezone=str(data.get("timezone") or "UTC"),
        pbx_kind=str(data.get("pbx_kind") or ""),
        config=data.get("config") or {},
        webhook_token_digests=tuple(str(d) for d in data.get("webhook_token_digests") or ()),
        # `revision` changes with every apply; `updated_at` (second precision) on an item applied
        # before revisions were stored.
        version=str(data.get("revision") or data.get("updated_at") or ""),
        phone_country_code=str(data.get("phone_country_code") or ""),
        read_at=now,
    )
    _cache[account_id] = account
    if account_id in _missing:
        with _missing_lock:
            _missing.pop(account_id, None)
    return Lookup(account_id, replace(account, fresh=True), now, fresh=True, contact=contact)


def recheck(seen: Lookup, *, fast: bool = False) -> Lookup:
    """After a presented credential did not match `seen`: the account as read since, by another
    request or now (within the budget, infra/refresh.py), else `seen` itself. The same reads whether
    the account exists or not, so a refusal's timing does not tell which accounts exist."""
    if seen.fresh:
        # Nothing newer to read, but the read made for this request is charged to the budget like a
        # recheck: otherwise an id this container has not read yet (a made-up one, or a real one
        # gone cold) would be refused after one read more than one it holds (a real one, warm).
        _refresh.allow(seen.id)
        return seen
    with _recheck_locks[hash(seen.id) % len(_recheck_locks)]:
        hit = _cache.get(seen.id)
        if hit is not None and hit.read_at > seen.read_at:
            return Lookup(seen.id, hit, hit.read_at, fresh=False)
        missing_at = _missing.get(seen.id)
        if missing_at is not None and missing_at > seen.read_at:
            return Lookup(seen.id, None, missing_at, fresh=False)
        if not _refresh.allow(seen.id):
            return seen
        return lookup(seen.id, fast=fast, refresh=True)


def get_account(account_id: str, *, fast: bool = False, refresh: bool = False) -> Account:
    found = lookup(account_id, fast=fast, refresh=refresh).account
    if found is None:
        raise UnknownAccount(account_id)
    return found


def authenticate(account_id: str, presented: str, *, fast: bool = False) -> Account:
    """The account whose webhook token `presented` is; UnknownAccount for a wrong token too, after
    the same work (a recheck) as for an account that does not exist."""
    account, _ = _authenticated(account_id, presented, fast=fast, caller=None)
    return account


def authenticate_caller(account_id: str, presented: str, caller: str | None) -> tuple[Account, ContactRead | None]:
    """`authenticate` on the fast path for a caller lookup, and the caller's directory entry when
    reading the account read it too (`caller`: its E.164 key, core/phones.py international_guess):
    (E.164, item or None), else None. On a cold start that is the lookup's one round trip, as the
    floor's (bench/benchmark.py). Either way the reads are the same whether the account exists or
    not, so a refusal's timing still tells nothing."""
    return _authenticated(account_id, presented, fast=True, caller=caller)


def _authenticated(
    account_id: str, presented: str, *, fast: bool, caller: str | None
) -> tuple[Account, ContactRead | None]:
    seen = lookup(account_id, fast=fast, caller=caller)
    if seen.account is not None and seen.account.accepts(presented):
        return seen.account, seen.contact
    again = recheck(seen, fast=fast)
    if again.account is not None and again.account.accepts(presented):
        return again.account, again.contact
    raise UnknownAccount(account_id)


def clear_account_cache() -> None:
    """Forget every account read, and every one found missing: what an apply calls, so that an
    account applied a moment ago answers at once in this container."""
    _cache.clear()
    with _missing_lock:
        _missing.clear()
    _parsed.clear()
    _refresh.clear()
