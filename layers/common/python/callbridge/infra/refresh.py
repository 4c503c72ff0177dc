"""How often a warm Lambda may re-read something because a presented credential did not match.

A credential we do not know may be one applied a moment ago that this container has not seen yet,
so it re-reads (the account item, or the account's secrets in SSM) at once - a few times in a row,
for a PBX that retries a refused request right after the apply - and then at most once a second
per account: a flood of wrong credentials costs one read a second, not one read each."""

from __future__ import annotations

import threading
import time


class RefreshBudget:
    """A token bucket per key: `burst` re-reads at once, then `per_second`."""

    def __init__(self, burst: float = 5.0, per_second: float = 1.0) -> None:
        self.burst = burst
        self.per_second = per_second
        self._tokens: dict[str, tuple[float, float]] = {}  # key -> (tokens left, when counted)
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        with self._lock:
            now = time.monotonic()
            left, then = self._tokens.get(key, (self.burst, now))
            left = min(self.burst, left + (now - then) * self.per_second)
            allowed = left >= 1.0
            self._tokens[key] = (left - 1.0 if allowed else left, now)
            return allowed

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
