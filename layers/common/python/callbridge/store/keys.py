"""The key layout of the three tables, defined once. Every store module builds its keys here.

Accounts table (pk, sk):
    ACCOUNT#{account}  CONFIG                  the account: stored config, token digests
    ACCOUNT#{account}  USER#{pbx user}         a mapped user (from the account file, sync marks)
    ACCOUNT#{account}  PBXUSER#{name}          a PBX user no mapping names (last sync)
    ACCOUNT#{account}  CURSOR#{name}           a poller's or backfill's position
Calls table (pk, sk):
    CALL#{account}#{call id}  CALL                      the canonical call
    CALL#{account}#{call id}  EVT#{cmd}#{type}#{user}   one per distinct source record (timeline, idempotency)
    CALL#{account}#{call id}  DLV#{crm}                 one delivery per CRM
    CALL#{account}#{call id}  CRMCALL#{crm}             the CRM's own id of the call, when it has one (store/crm_calls.py)
    MSG#{account}#{uuid}      MSG                       a source's non-call record (ccrm.pl SMS/fax)
    OPEN#{account}#{source}   {since}#{call id}         a call a source began and may not finish (store/open_calls.py)
    OPEN#{account}#ringing    {first ring}#{call id}    a call a live event made ring (store/open_calls.py)
    CBK#{account}#{crm}#{E.164}  HEAD | T#{first missed at}#{call id}   callback tasks (store/callbacks.py)
    HEALTH#{account}          CRM#{crm} | RUN#{job}   a CRM's last success and error, a scheduled job's last run (store/health.py)
Contacts table (account, phone): one item per account and E.164 phone (store/contacts.py).
RoutingCacheTable (account, phone):
    {account}  {E.164 phone}        a caller's responsible manager as a CRM named it (expires)
    {account}  STATUS#{pbx user}    a manager's status as the CRM reported it (store/statuses.py)
"""

from __future__ import annotations

import re
from typing import Any

# What an account id may be: it is part of every key above, of URLs and of SSM paths.
ACCOUNT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ACCOUNT_PREFIX = "ACCOUNT#"
CONFIG = "CONFIG"
USER_PREFIX = "USER#"
PBX_USER_PREFIX = "PBXUSER#"
STATUS_PREFIX = "STATUS#"
CURSOR_PREFIX = "CURSOR#"
CALL_PREFIX = "CALL#"
CALL_SK = "CALL"
EVENT_PREFIX = "EVT#"
DELIVERY_PREFIX = "DLV#"
MESSAGE_PREFIX = "MSG#"
CRM_CALL_PREFIX = "CRMCALL#"
OPEN_PREFIX = "OPEN#"
CALLBACK_PREFIX = "CBK#"
CLICK_PREFIX = "CLICK#"
HEALTH_PREFIX = "HEALTH#"


def account_pk(account: str) -> str:
    return f"{ACCOUNT_PREFIX}{account}"


def account_key(account: str, sk: str = CONFIG) -> dict[str, Any]:
    """A DynamoDB key (typed) of the Accounts table."""
    return {"pk": {"S": account_pk(account)}, "sk": {"S": sk}}


def user_sk(pbx_user: str) -> str:
    return f"{USER_PREFIX}{pbx_user}"


def call_pk(account: str, call_id: str) -> str:
    return f"{CALL_PREFIX}{account}#{call_id}"


def call_id_of(account: str, pk: str) -> str:
    return pk[len(call_pk(account, "")) :]


def call_key(account: str, call_id: str, sk: str = CALL_SK) -> dict[str, Any]:
    return {"pk": {"S": call_pk(account, call_id)}, "sk": {"S": sk}}


def event_sk(cmd: str, type_: str, user: str) -> str:
    return f"{EVENT_PREFIX}{cmd}#{type_}#{user}"


def delivery_sk(crm: str) -> str:
    return f"{DELIVERY_PREFIX}{crm}"


def crm_call_sk(crm: str) -> str:
    return f"{CRM_CALL_PREFIX}{crm}"


def message_pk(account: str, uuid: str) -> str:
    return f"{MESSAGE_PREFIX}{account}#{uuid}"


def open_pk(account: str, source: str) -> str:
    return f"{OPEN_PREFIX}{account}#{source}"


def contact_key(account: str, e164: str) -> dict[str, Any]:
    """A DynamoDB key (typed) of the Contacts table."""
    return {"account": {"S": account}, "phone": {"S": e164}}


MESSAGE_SK = "MSG"


def cursor_sk(name: str) -> str:
    return f"{CURSOR_PREFIX}{name}"


def pbx_user_sk(name: str) -> str:
    return f"{PBX_USER_PREFIX}{name}"


def callback_pk(account: str, crm: str, phone: str) -> str:
    """The partition of one caller's callback tasks in one CRM of an account."""
    return f"{CALLBACK_PREFIX}{account}#{crm}#{phone}"


def click_pk(account: str, pbx_user: str, e164: str) -> str:
    """A click-to-call waiting for the PBX call that answers it (store/clicks.py)."""
    return f"{CLICK_PREFIX}{account}#{pbx_user}#{e164}"


def health_pk(account: str) -> str:
    """The partition of an account's health stamps (store/health.py)."""
    return f"{HEALTH_PREFIX}{account}"
