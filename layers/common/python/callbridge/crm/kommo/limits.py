"""amoCRM's limit: 7 requests a second per account (docs/protocols/kommo.md, "Limits"), one bucket per
account host in a process, shared by the API client and the OAuth token endpoint."""

from __future__ import annotations

from callbridge.infra.http import RateLimiter, limiter

# Below the documented 7 a second: our clock and amoCRM's window never line up exactly, and an 8th
# request in amoCRM's second is a 429 for every client of the account.
RATE_PER_SECOND = 6.0


def bucket(host: str, rate_per_second: float = RATE_PER_SECOND) -> RateLimiter:
    """The process's bucket of the account at `host` (host[:port])."""
    return limiter(f"kommo:{host.lower()}", rate_per_second, burst=1)
