"""Cloud PBX REST API for CRM, sending side (docs/cloudpbx.md): `makeCall`, `accounts` and
`history` (the call history as CSV, for reconciliation and backfill), form POSTs to the PBX's single address with its `token`.

Field-proven details beyond the documentation: `phone` must be digits only (the PBX rejects a leading `+`);
`makeCall` may answer `{"uuid": …}`, a bare id or an empty `OK`; `accounts` answers
`[{name, realName, ext?, email?}]`; errors are `400 Invalid parameters…` (sometimes as text) and
`401 {"error": "Invalid token"}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from callbridge.pbx.base import PbxFailure

if TYPE_CHECKING:
    import httpx

    from callbridge.core.accounts import Account

DEFAULT_TIMEOUT_S = 5.0


class PbxError(PbxFailure):
    """The PBX did not do what we asked. `status` is what our own API answers for it."""

    status = 502

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class PbxRejected(PbxError):
    """The PBX answered and said no (bad parameters, wrong token, unknown user)."""

    status = 502


class PbxUnavailable(PbxError):
    """The PBX did not answer in time, could not be reached, or failed (5xx)."""

    status = 504


@dataclass(frozen=True, slots=True)
class PbxUser:
    name: str
    real_name: str | None = None
    ext: str | None = None
    email: str | None = None


def pbx_phone(e164: str) -> str:
    """What the PBX dials: the E.164 digits without `+`, as in the documentation's `phone=79101234567`."""
    return "".join(ch for ch in e164 if ch.isdigit())


def for_account(account: Account, *, force: bool = False) -> CloudPbxClient | None:
    """Our client of the account's PBX API (its key from SSM, `force` reads it again); None without
    api_url or token."""
    from callbridge.infra import secrets
    from callbridge.infra.settings import get_settings
    from callbridge.pbx.cloudpbx.settings import CloudPbxSettings

    settings = account.settings.pbx
    api_url = settings.api_url if isinstance(settings, CloudPbxSettings) else None
    if not api_url:
        return None
    token = secrets.account_secret(account.id, secrets.PBX_TOKEN, force=force, version=account.version)
    if not token:
        return None
    return CloudPbxClient(
        str(api_url), token, timeout_s=get_settings().pbx_timeout_s, trusted_hosts=settings.trusted_hosts
    )


class CloudPbxClient:
    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        trusted_hosts: frozenset[str] = frozenset(),
    ) -> None:
        self._url = api_url
        self._token = token
        self._timeout_s = timeout_s
        self._trusted_hosts = trusted_hosts  # the account's: the PBX may sit on its private network

    def make_call(self, user: str, phone_e164: str, *, clid: str | None = None) -> str | None:
        """Ring `user`, then connect them to the number. The PBX's call id when it gives one."""
        fields = {"cmd": "makeCall", "phone": pbx_phone(phone_e164), "user": user, "token": self._token}
        if clid:
            fields["clid"] = pbx_phone(clid)
        text = self._post(fields)
        try:
            data = json.loads(text) if text.strip() else None
        except ValueError:
            data = text.strip()
        if isinstance(data, dict):
            value = data.get("uuid") or data.get("id")
            return str(value) if value else None
        if isinstance(data, str | int) and str(data) and str(data).upper() != "OK":
            return str(data)
        return None

    def accounts(self) -> list[PbxUser]:
        text = self._post({"cmd": "accounts", "token": self._token}, attempts=2)
        try:
            data = json.loads(text)
        except ValueError:
            raise PbxUnavailable("the PBX answered accounts with something that is not JSON") from None
        if not isinstance(data, list):
            raise PbxUnavailable("the PBX answered accounts with something that is not a list")
        users: list[PbxUser] = []
        for entry in data:
            if not isinstance(entry, dict) or not str(entry.get("name") or "").strip():
                continue  # one malformed entry must not hide the others
            users.append(
                PbxUser(
                    name=str(entry["name"]).strip(),
                    real_name=_text(entry.get("realName")),
                    ext=_text(entry.get("ext")),
                    email=_text(entry.get("email")),
                )
            )
        return users

    def history(self, start: datetime, end: datetime, *, limit: int, kind: str = "all") -> bytes:
        """The calls that started within [start, end] (both ends in UTC, to the second) as the PBX
        writes them: CSV bytes (callbridge.pbx.cloudpbx.history_csv parses them). A read: retried once."""
        from callbridge.pbx.cloudpbx.history_csv import compact_utc

        fields = {
            "cmd": "history",
            "token": self._token,
            "start": compact_utc(start),
            "end": compact_utc(end),
            "type": kind,
            "limit": str(limit),
        }
        return self._request(fields, attempts=2).content

    def _post(self, fields: dict[str, str], *, attempts: int = 1) -> str:
        return self._request(fields, attempts=attempts).text

    def _request(self, fields: dict[str, str], *, attempts: int = 1) -> httpx.Response:
        from urllib.parse import urlsplit

        from callbridge.infra.http import HttpError, HttpPeer, RetryPolicy, TransientHttpError

        parts = urlsplit(self._url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # makeCall is never retried here: a retry after a lost answer would ring the manager twice.
        peer = HttpPeer(
            "cloudpbx",
            f"{parts.scheme}://{parts.netloc}",
            timeout_s=self._timeout_s,
            retry=RetryPolicy(attempts=attempts, backoff_initial_s=0.2, backoff_max_s=1.0, jitter_s=0.2),
            secrets=(self._token,),
            trusted_hosts=self._trusted_hosts,
        )
        try:
            response = peer.request("POST", path, data=fields)
        except TransientHttpError as error:
            if error.status is None and error.reason == "timeout":
                raise PbxUnavailable(f"the PBX did not answer within {self._timeout_s:g} s") from None
            if error.status is None:
                raise PbxUnavailable(f"the PBX could not be reached ({error.reason})", 502) from None
            raise PbxUnavailable(f"the PBX failed (HTTP {error.status})", 502) from None
        except HttpError as error:
            if error.status is None:  # the address guard refused the PBX's address: nothing was sent
                raise PbxRejected(f"the PBX API address is not allowed ({error.reason})") from None
            if error.status == 401:
                raise PbxRejected("the PBX refused our token (401 Invalid token)") from None
            raise PbxRejected(f"the PBX refused the request ({error.status}: {_reason(error.body)})") from None
        finally:
            peer.close()
        if response.status_code != 200:
            raise PbxUnavailable(f"the PBX answered HTTP {response.status_code}", 502)
        return response


def _text(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def _reason(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):
        return error[:200]
    return body.strip()[:200] or "no details"
