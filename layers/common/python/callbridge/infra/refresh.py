"""How often a warm Lambda may re-read something because a presented credential did not match.

A credential we do not know may be one applied a moment ago that this container has not seen yet,
so it re-reads (the account item) at once - a few times in a row, for a PBX that retries a refused
request right after the apply - and then at most once a second per account id: a flood of wrong
credentials costs one read a second, not one read each. Ids of accounts that do not exist get the
same budget (core/accounts.py: a refusal costs the same whether the account exists or not), so the
buckets are bounded: a flood of made-up ids must not grow a warm Lambda's memory without end."""

from __future__ import annotations

import threading
import time

MAX_KEYS = 4096


class RefreshBudget:
    """A token bucket per key: `burst` re-reads at once, then `per_second`."""

    def __init__(self, burst: float = 5.0, per_second: float = 1.0, max_keys: int = MAX_KEYS) -> None:
        self.burst = burst
        self.per_second = per_second
        self.max_keys = max_keys
        self._tokens: dict[str, tuple[float, float]] = {}  # key -> (tokens left, when counted)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        with self._lock:
            now = time.monotonic()
            left, then = self._tokens.pop(key, (self.burst, now))
            left = min(self.burst, left + (now - then) * self.per_second)
            allowed = left >= 1.0
            if len(self._tokens) >= self.max_keys:
                self._prune(now)
            self._tokens[key] = (left - 1.0 if allowed else left, now)  # last: the order stays oldest first
            return allowed

    def _prune(self, now: float) -> None:
        """Drop the buckets that have filled up again (forgetting them changes nothing), then, if
        every one is still in use, the least recently used."""
        refill = self.burst / self.per_second if self.per_second > 0 else float("inf")
        for key in [k for k, (_, then) in self._tokens.items() if now - then >= refill]:
            del self._tokens[key]
        while len(self._tokens) >= self.max_keys:
            del self._tokens[next(iter(self._tokens))]

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
