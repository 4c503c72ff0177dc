"""Account secrets (PBX tokens, our webhook tokens, CRM keys) in SSM Parameter Store.

Layout: `{SSM_PREFIX}/accounts/{account}/{name}` SecureString parameters, read as one path with
Powertools' parameters utility and cached. Values never leave this module except to be compared or
sent to their own peer, and are never logged.
"""

from __future__ import annotations

import hmac
import time
from functools import cache
from typing import TYPE_CHECKING

from callbridge import aws
from callbridge.settings import get_settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

CACHE_SECONDS = 300
# A token that does not match may be a freshly rotated one that this warm Lambda has not seen yet:
# re-read SSM then, but at most this often per account, so wrong tokens cannot hammer SSM.
_REFRESH_INTERVAL = 30.0
_last_refresh: dict[str, float] = {}

# Secret names inside an account's path.
CRM_TOKEN = "crm_token"
CRM_TOKEN_PREVIOUS = "crm_token_previous"
PBX_TOKEN = "pbx_token"


@cache
def _provider() -> SSMProvider:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    return SSMProvider(boto3_client=aws.ssm(fast=True))


def account_path(account_id: str) -> str:
    return f"{get_settings().ssm_prefix}/accounts/{account_id}"


def account_secrets(account_id: str, *, force: bool = False) -> dict[str, str]:
    values = _provider().get_multiple(account_path(account_id), max_age=CACHE_SECONDS, decrypt=True, force_fetch=force)
    return {str(k): str(v) for k, v in values.items()}


def matches_any(presented: str, valid: list[str]) -> bool:
    """Constant-time comparison against every valid token (no early exit on the first match)."""
    given = presented.encode()
    result = False
    for token in valid:
        if token:
            result |= hmac.compare_digest(given, token.encode())
    return result


def verify_crm_token(account_id: str, presented: str) -> bool:
    """True when `presented` is the account's current webhook token or, during a rotation, the
    previous one."""
    if not presented:
        return False
    names = (CRM_TOKEN, CRM_TOKEN_PREVIOUS)
    secrets = account_secrets(account_id)
    if matches_any(presented, [secrets.get(n, "") for n in names]):
        return True
    now = time.monotonic()
    if now - _last_refresh.get(account_id, -_REFRESH_INTERVAL) < _REFRESH_INTERVAL:
        return False
    _last_refresh[account_id] = now
    secrets = account_secrets(account_id, force=True)
    return matches_any(presented, [secrets.get(n, "") for n in names])


def reset_secret_cache() -> None:
    _provider.cache_clear()
    _last_refresh.clear()
