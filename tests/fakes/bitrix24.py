"""Fake Bitrix24 portal (docs/protocols/bitrix24.md): the REST methods CallBridge uses, through an
inbound webhook (`/rest/{user}/{code}/{method}.json`), answering in Bitrix24's shape (`result` +
`time`, or `error` + `error_description`) and checking every request against our notes:
- `telephony.externalcall.register` (a repeat with the same number, type, user, line and
  EXTERNAL_CALL_ID within 30 minutes, before the call is finished, answers the same CALL_ID whatever
  its start time; CRM_CREATE makes a lead for an unknown number), `telephony.externalcall.finish`
  (once: a finished call is refused), `show` / `hide` (logged in order), `attachRecord` (the
  recording is downloaded, as the portal does; a second one replaces the file, counted in `attached`), `voximplant.statistic.get` by CALL_ID,
  `telephony.externalCall.searchCrmEntities`, `user.get`, and `batch` (`$result[name][FIELD]`);
- callback to-dos: `crm.activity.todo.add` (on an entity the portal has, for one of its users, a
  deadline in ISO 8601), `crm.activity.list` (filtered, ordered, selected, 50 a page) and
  `crm.activity.update` (`fields[COMPLETED]`), each checked against the method's documented
  parameters; `leads_found` makes the leads CRM_CREATE made searchable, as on a portal (off: the
  routing tests written before it expect a number's lead to name nobody);
- the portal's leaky bucket: 2 requests a second, 50 at once; beyond that QUERY_LIMIT_EXCEEDED (503);
- as a local application (`/rest/{method}.json` with `auth={access token}`) and Bitrix24's OAuth
  server (`GET /oauth/token/`, grant_type authorization_code or refresh_token): access tokens live
  `access_lifetime`, `expire_access()` ends them now; a refresh rotates the refresh token and spends
  the old one AND the access token issued with it (invalid_grant / invalid_token from then on);
  a method called with a stale token answers 401 `expired_token`;
- faults: `limit_next = n` answers the next n requests with the limit error (other applications
  spent the bucket), `lose_answers[method] = n` makes the next n requests that reach `method` do their work
  and then answer 500 (the answer lost after saving), `reject_phones` refuses a register.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx

PATH = re.compile(r"^/rest/(\d+)/([^/]+)/([A-Za-z0-9_.]+)\.json$")
APP_PATH = re.compile(r"^/rest/([A-Za-z0-9_.]+)\.json$")  # a local application's call: auth= in the form
CLIENT_ID = "local.0000fake0001.00000001"
CLIENT_SECRET = "fake-client-secret-0123456789"
MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
STATUS_CODES = {"200", "304", "603", "603-S", "403", "404", "486", "484", "503", "480", "402", "423", "OTHER"}
REGISTER_FIELDS = {
    "USER_ID", "USER_PHONE_INNER", "PHONE_NUMBER", "CALL_START_DATE", "CRM_CREATE", "CRM_SOURCE",
    "CRM_ENTITY_TYPE", "CRM_ENTITY_ID", "SHOW", "CALL_LIST_ID", "LINE_NUMBER", "TYPE", "ADD_TO_CHAT",
    "EXTERNAL_CALL_ID",
}  # fmt: skip
# What Bitrix24 compares to answer a register with an earlier CALL_ID (its register page, "Features
# of re-registration"): number, type, user, line and EXTERNAL_CALL_ID - never the start time nor the
# CRM fields. The user counts as named, whichever of USER_ID and USER_PHONE_INNER named him.
REPEAT_KEYS = ("PHONE_NUMBER", "TYPE", "LINE_NUMBER", "EXTERNAL_CALL_ID")
FINISH_FIELDS = {
    "CALL_ID", "USER_ID", "USER_PHONE_INNER", "DURATION", "COST", "COST_CURRENCY", "STATUS_CODE",
    "FAILED_REASON", "RECORD_URL", "VOTE", "ADD_TO_CHAT",
}  # fmt: skip
# crm.activity.todo.add's parameters (apidocs.bitrix24.com, "Add Universal Activity"); * required.
TODO_FIELDS = {"ownerTypeId", "ownerId", "deadline", "title", "description", "responsibleId", "parentActivityId",
               "pingOffsets", "colorId"}  # fmt: skip
ACTIVITY_FIELDS = {  # crm.activity.fields: what crm.activity.list filters / selects and .update may set
    "ID", "OWNER_ID", "OWNER_TYPE_ID", "TYPE_ID", "PROVIDER_ID", "PROVIDER_TYPE_ID", "SUBJECT", "DESCRIPTION",
    "COMPLETED", "RESPONSIBLE_ID", "DEADLINE", "START_TIME", "END_TIME", "PRIORITY", "CREATED", "LAST_UPDATED",
}  # fmt: skip
OWNER_TYPE_NAMES = {1: "LEAD", 2: "DEAL", 3: "CONTACT", 4: "COMPANY"}
REGISTER_REPEAT_S = 30 * 60
BUCKET, LEAK_PER_S = 50, 2.0  # the portal's leaky bucket: its size, and how fast it drains


class Refused(Exception):
    def __init__(self, code: str, description: str, status: int = 400):
        super().__init__(code)
        self.code, self.description, self.status = code, description, status


def php_parse(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form fields in PHP's bracket form (`A[]=1`, `F[K]=v`, `cmd[x]=…`) as nested values."""
    root: dict[str, Any] = {}
    for name, value in pairs:
        head = name.split("[", 1)[0]
        keys = [head, *re.findall(r"\[([^\]]*)\]", name[len(head) :])]
        node: Any = root
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if key == "":
                node.append(value) if last else node.append({})
                node = node if last else node[-1]
                continue
            if last:
                node[key] = value
            else:
                default: Any = [] if keys[i + 1] == "" else {}
                node = node.setdefault(key, default)
    return root


@dataclass
class FakeBitrix24:
    code: str  # the webhook's secret code
    users: dict[int, str] = field(default_factory=dict)  # USER_ID -> inner phone
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)  # E.164 -> searchCrmEntities entry
    reject_phones: set[str] = field(default_factory=set)
    lose_answers: dict[str, int] = field(default_factory=dict)
    fetch_records: bool = False  # download RECORD_URL as the portal does (a reachable URL only)
    # Methods this portal lacks (a plan or module without them): ERROR_METHOD_NOT_FOUND, no violation.
    without: set[str] = field(default_factory=set)
    attached: dict[str, int] = field(default_factory=dict)  # CALL_ID -> attachRecord requests taken
    now: Callable[[], float] = time.time
    bucket: int = BUCKET
    limit_next: int = 0  # answer the next n requests QUERY_LIMIT_EXCEEDED (others spent the bucket)
    errors: list[str] = field(default_factory=list)  # protocol violations seen
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)  # CALL_ID -> registered call
    finished: dict[str, dict[str, Any]] = field(default_factory=dict)  # CALL_ID -> the filed call
    records: dict[str, bytes | str] = field(default_factory=dict)  # CALL_ID -> recording (or its URL)
    cards: list[tuple[str, str, tuple[int, ...]]] = field(default_factory=list)  # (show|hide, CALL_ID, users)
    late_hides: list[str] = field(default_factory=list)  # CALL_IDs of hides a finish crossed (refused)
    leads: list[str] = field(default_factory=list)  # phones Bitrix24 made a lead for
    leads_found: bool = False  # searchCrmEntities finds the leads CRM_CREATE made (as a portal does)
    lead_entities: dict[str, dict[str, Any]] = field(default_factory=dict)  # E.164 -> the lead CRM_CREATE made
    activities: dict[int, dict[str, Any]] = field(default_factory=dict)  # ID -> a to-do (crm.activity.todo.add)
    requests: int = 0
    methods: list[str] = field(default_factory=list)  # every method reached, batch commands too
    limited: int = 0  # requests answered QUERY_LIMIT_EXCEEDED
    # The local application and the OAuth server.
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    member_id: str = MEMBER_ID
    portal: str = ""  # our own base URL (http://127.0.0.1:port): client_endpoint is {portal}/rest/
    access_lifetime: float = 3600.0
    oauth_delay: float = 0.0  # the OAuth server answers this late (two refreshes overlap)
    access_tokens: dict[str, float] = field(default_factory=dict)  # live token -> when it ends
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # unspent refresh token -> its access token
    spent: set[str] = field(default_factory=set)  # refresh tokens used once (refused again)
    codes: set[str] = field(default_factory=set)  # authorization codes not exchanged yet
    grants: list[str] = field(default_factory=list)  # every grant served: authorization_code, refresh_token
    refused_grants: list[str] = field(default_factory=list)  # every grant refused, with its error
    stale_calls: int = 0  # methods refused expired_token / invalid_token
    seen_tokens: list[str] = field(default_factory=list)  # every token issued (tests look for them in logs)
    _registered: dict[tuple[Any, ...], tuple[str, float]] = field(default_factory=dict)
    _level: float = 0.0
    _drained_at: float = field(default_factory=time.monotonic)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # -- what a test reads ---------------------------------------------------------------------
    def filed(self) -> list[dict[str, Any]]:
        """Every finished call, as register + finish parameters (typed)."""
        return list(self.finished.values())

    def click(self, user_id: int, phone: str) -> dict[str, str]:
        """A manager clicks a number: Bitrix24 registers the outgoing call itself and posts
        OnExternalCallStart (these fields, without the application token) to our handler."""
        with self._lock:
            call_id = self._register({"USER_ID": str(user_id), "PHONE_NUMBER": phone, "TYPE": "1",
                                      "CALL_START_DATE": datetime.now().astimezone().isoformat(timespec="seconds"),
                                      "CRM_CREATE": "0", "SHOW": "1"})["CALL_ID"]  # fmt: skip
        return {"event": "ONEXTERNALCALLSTART", "data[USER_ID]": str(user_id), "data[PHONE_NUMBER]": phone,
                "data[CALL_ID]": call_id, "data[CRM_ENTITY_TYPE]": "CONTACT", "data[CRM_ENTITY_ID]": "5",
                "data[IS_MOBILE]": "0", "ts": str(int(time.time()))}  # fmt: skip

    # -- the local application -------------------------------------------------------------------
    def authorize(self) -> str:
        """An administrator authorizes the application in his browser: the code its redirect gets."""
        with self._lock:
            code = secrets.token_hex(16)
            self.codes.add(code)
            return code

    def expire_access(self) -> None:
        """Every access token issued so far ends now (an hour passed)."""
        with self._lock:
            for token in self.access_tokens:
                self.access_tokens[token] = 0.0

    def _issue(self) -> dict[str, Any]:
        access, refresh = secrets.token_hex(24), secrets.token_hex(24)
        self.access_tokens[access] = time.time() + self.access_lifetime
        self.refresh_tokens[refresh] = access
        self.seen_tokens += [access, refresh]
        return {"access_token": access, "expires": int(time.time() + self.access_lifetime),
                "expires_in": int(self.access_lifetime), "scope": "app", "domain": "oauth.bitrix.info",
                "server_endpoint": "https://oauth.bitrix.info/rest/", "status": "L",
                "client_endpoint": f"{self.portal}/rest/", "member_id": self.member_id, "user_id": 1,
                "refresh_token": refresh}  # fmt: skip

    def _oauth(self, method: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if method != "GET":
            return self._violation(f"{method} /oauth/token/: the OAuth server is asked with GET")
        grant = query.get("grant_type", "")

        def refuse(error: str, status: int = 400) -> tuple[int, Any, dict[str, str]]:
            self.refused_grants.append(f"{grant}: {error}")
            return status, {"error": error, "error_description": error.replace("_", " ")}, {}

        if query.get("client_id") != self.client_id or query.get("client_secret") != self.client_secret:
            return refuse("invalid_client", 401)
        if grant == "authorization_code":
            if query.get("code") not in self.codes:
                return refuse("invalid_grant")
            self.codes.discard(query["code"])
        elif grant == "refresh_token":
            token = query.get("refresh_token", "")
            if token in self.spent or token not in self.refresh_tokens:
                return refuse("invalid_grant")
            # Bitrix24: the refresh token and the access token issued with it are both spent now.
            self.spent.add(token)
            self.access_tokens.pop(self.refresh_tokens.pop(token), None)
        else:
            self.errors.append(f"oauth: grant_type {grant!r}")
            return refuse("unsupported_grant_type")
        self.grants.append(grant)
        return 200, self._issue(), {}

    def _app_auth(self, params: dict[str, Any]) -> tuple[int, Any, dict[str, str]] | None:
        token = str(params.pop("auth", "") or "")
        ends = self.access_tokens.get(token)
        if ends is None or ends <= time.time():
            self.stale_calls += 1
            error = "expired_token" if ends is not None else "invalid_token"
            return 401, {"error": error, "error_description": "The access token provided has expired."}, {}
        return None

    # -- HTTP ------------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        started = time.time()
        if path == "/oauth/token/" and self.oauth_delay:
            time.sleep(self.oauth_delay)  # outside the lock: other requests go on meanwhile
        with self._lock:
            self.requests += 1
            if path == "/oauth/token/":
                return self._oauth(method, query)
            match, app = PATH.match(path), APP_PATH.match(path)
            if method != "POST" or not (match or app):
                return self._violation(f"{method} {path}: not a webhook method call")
            if match and match.group(2) != self.code:
                return 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, {}
            name = match.group(3) if match else app.group(1) if app else ""
            if headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded" and body:
                return self._violation(f"{name}: the body is not a form")
            params = php_parse(parse_qsl(body.decode(), keep_blank_values=True))
            if app and (stale := self._app_auth(params)):
                return stale
            if self.limit_next > 0 or not self._take_token():
                self.limit_next = max(0, self.limit_next - 1)
                self.limited += 1
                return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, {}
            try:
                result = self._batch(params) if name == "batch" else self._method(name, params)
            except Refused as refused:
                return refused.status, {"error": refused.code, "error_description": refused.description}, {}
            if self._lose(name):
                return 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "lost answer"}, {}
            return 200, {"result": result, "time": self._time(started)}, {}

    def _violation(self, message: str) -> tuple[int, Any, dict[str, str]]:
        self.errors.append(message)
        return 400, {"error": "ERROR_ARGUMENT", "error_description": message}, {}

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._level = max(0.0, self._level - (now - self._drained_at) * LEAK_PER_S)
        self._drained_at = now
        if self._level + 1 > self.bucket:
            return False
        self._level += 1
        return True

    def _lose(self, name: str) -> bool:
        left = self.lose_answers.get(name, 0)
        if left > 0:
            self.lose_answers[name] = left - 1
            return True
        return False

    def _time(self, started: float) -> dict[str, Any]:
        finish = time.time()
        return {"start": started, "finish": finish, "duration": finish - started, "processing": finish - started,
                "date_start": datetime.fromtimestamp(started).astimezone().isoformat(timespec="seconds"),
                "date_finish": datetime.fromtimestamp(finish).astimezone().isoformat(timespec="seconds")}  # fmt: skip

    # -- batch -----------------------------------------------------------------------------------
    def _batch(self, params: dict[str, Any]) -> dict[str, Any]:
        commands = params.get("cmd")
        if not isinstance(commands, dict) or not commands or len(commands) > 50:
            raise Refused("ERROR_ARGUMENT", "cmd: 1 to 50 commands")
        if str(params.get("halt", "0")) not in ("0", "1"):
            raise Refused("ERROR_ARGUMENT", "halt: 0 or 1")
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        lost = False
        for key, command in commands.items():
            method, _, query = str(command).partition("?")
            pairs = [(k, self._substitute(v, results)) for k, v in parse_qsl(query, keep_blank_values=True)]
            try:
                results[key] = self._method(method, php_parse(pairs))
            except Refused as refused:
                errors[key] = {"error": refused.code, "error_description": refused.description}
                if str(params.get("halt")) == "1":
                    break
            lost = self._lose(method) or lost
        if lost:
            raise Refused("INTERNAL_SERVER_ERROR", "lost answer", 500)
        return {"result": results, "result_error": errors, "result_total": [], "result_next": [], "result_time": {}}

    def _substitute(self, value: str, results: dict[str, Any]) -> str:
        def one(found: re.Match[str]) -> str:
            answer = results.get(found.group(1))
            if not isinstance(answer, dict) or found.group(2) not in answer:
                self.errors.append(f"batch: {found.group(0)} refers to nothing")
                return ""
            return str(answer[found.group(2)])

        return re.sub(r"\$result\[([^\]]+)\]\[([^\]]+)\]", one, value)

    # -- methods ---------------------------------------------------------------------------------
    def _method(self, name: str, params: dict[str, Any]) -> Any:
        self.methods.append(name)
        handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "telephony.externalcall.register": self._register,
            "telephony.externalcall.finish": self._finish,
            "telephony.externalcall.show": lambda p: self._card("show", p),
            "telephony.externalcall.hide": lambda p: self._card("hide", p),
            "telephony.externalCall.attachRecord": self._attach,
            "voximplant.statistic.get": self._statistic,
            "telephony.externalCall.searchCrmEntities": self._search,
            "crm.activity.todo.add": self._todo_add,
            "crm.activity.list": self._activity_list,
            "crm.activity.update": self._activity_update,
            "user.get": lambda p: [{"ID": str(i), "UF_PHONE_INNER": phone, "ACTIVE": True} for i, phone in self.users.items()],
        }  # fmt: skip
        handler = handlers.get(name) if name not in self.without else None
        if name in self.without:
            raise Refused("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        if handler is None:
            self.errors.append(f"{name}: a method CallBridge does not use")
            raise Refused("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        return handler(params)

    def _user(self, method: str, params: dict[str, Any]) -> int:
        if params.get("USER_ID") not in (None, ""):
            user = self._int(method, "USER_ID", params["USER_ID"])
        elif params.get("USER_PHONE_INNER"):
            found = [i for i, phone in self.users.items() if phone == params["USER_PHONE_INNER"]]
            if not found:
                raise Refused("ERROR_ARGUMENT", "USER_PHONE_INNER: no such user")
            user = found[0]
        else:
            self.errors.append(f"{method}: neither USER_ID nor USER_PHONE_INNER")
            raise Refused("ERROR_ARGUMENT", "USER_ID or USER_PHONE_INNER is required")
        if self.users and user not in self.users:
            raise Refused("ERROR_ARGUMENT", f"USER_ID {user}: no such user")
        return user

    def _int(self, method: str, name: str, value: Any) -> int:
        if not str(value).lstrip("-").isdigit():
            self.errors.append(f"{method}: {name} is not an integer: {value!r}")
            raise Refused("ERROR_ARGUMENT", f"{name} must be an integer")
        return int(value)

    def _register(self, params: dict[str, Any]) -> dict[str, Any]:
        method = "telephony.externalcall.register"
        if unknown := set(params) - REGISTER_FIELDS:
            self.errors.append(f"{method}: unknown parameters {sorted(unknown)}")
        user = self._user(method, params)
        phone = str(params.get("PHONE_NUMBER") or "")
        if not phone:
            self.errors.append(f"{method}: no PHONE_NUMBER")
            raise Refused("ERROR_ARGUMENT", "PHONE_NUMBER is required")
        kind = self._int(method, "TYPE", params.get("TYPE"))
        if kind not in (1, 2, 3, 4):
            self.errors.append(f"{method}: TYPE {kind}")
        start = str(params.get("CALL_START_DATE") or "")
        try:
            if datetime.fromisoformat(start).tzinfo is None:
                self.errors.append(f"{method}: CALL_START_DATE without a time zone: {start}")
        except ValueError:
            self.errors.append(f"{method}: CALL_START_DATE is not ISO 8601: {start!r}")
        for flag in ("SHOW", "CRM_CREATE"):
            if str(params.get(flag, "0")) not in ("0", "1"):
                self.errors.append(f"{method}: {flag} must be 0 or 1")
        if phone in self.reject_phones:
            raise Refused("ERROR_ARGUMENT", f"PHONE_NUMBER {phone} is refused")
        key = (user, *(str(params.get(k) or "") for k in REPEAT_KEYS))
        now = self.now()
        repeated = self._registered.get(key)
        if repeated and now - repeated[1] < REGISTER_REPEAT_S and repeated[0] not in self.finished:
            call_id = repeated[0]  # Bitrix24's own de-duplication: same parameters, call not finished yet
        else:
            call_id = f"externalCall.{len(self.calls) + 1:08x}.{int(now)}"
            self._registered[key] = (call_id, now)
            lead = (
                str(params.get("CRM_CREATE")) == "1" and phone not in self.entities and phone not in self.lead_entities
            )
            if lead:
                self.leads.append(phone)
                # Its responsible: the register's user until finish names who took the call.
                self.lead_entities[phone] = {"CRM_ENTITY_TYPE": "LEAD", "CRM_ENTITY_ID": 1000 + len(self.leads),
                                             "NAME": phone, "ASSIGNED_BY_ID": str(user), "CALL_ID": None}  # fmt: skip
            if lead:
                self.lead_entities[phone]["CALL_ID"] = call_id
            self.calls[call_id] = {"USER_ID": user, "PHONE_NUMBER": phone, "TYPE": kind, "CALL_START_DATE": start,
                                   "CRM_CREATE": str(params.get("CRM_CREATE", "0")), "LEAD": lead,
                                   "EXTERNAL_CALL_ID": str(params.get("EXTERNAL_CALL_ID") or "")}  # fmt: skip
            if str(params.get("SHOW", "1")) == "1":  # Bitrix24 shows the card unless told not to
                self.cards.append(("show", call_id, (user,)))
        return {"CALL_ID": call_id, "CRM_CREATED_LEAD": None, "CRM_ENTITY_TYPE": "LEAD", "CRM_ENTITY_ID": 1}

    def _known_call(self, method: str, params: dict[str, Any]) -> str:
        call_id = str(params.get("CALL_ID") or "")
        if call_id not in self.calls:
            self.errors.append(f"{method}: unknown CALL_ID {call_id!r}")
            raise Refused("ERROR_ARGUMENT", "Call is not found")
        return call_id

    def _finish(self, params: dict[str, Any]) -> dict[str, Any]:
        method = "telephony.externalcall.finish"
        if unknown := set(params) - FINISH_FIELDS:
            self.errors.append(f"{method}: unknown parameters {sorted(unknown)}")
        call_id = self._known_call(method, params)
        user = self._user(method, params)
        duration = self._int(method, "DURATION", params.get("DURATION"))
        status = str(params.get("STATUS_CODE") or "200")
        if status not in STATUS_CODES:
            self.errors.append(f"{method}: STATUS_CODE {status!r}")
        if call_id in self.finished:
            # Not a violation: a retry after a lost answer does exactly this; the portal refuses it.
            raise Refused("ERROR_NOT_FOUND", "Call is not found or already finished")
        call = self.calls[call_id]
        made = self.lead_entities.get(call["PHONE_NUMBER"])
        if made is not None and made["CALL_ID"] == call_id:  # finish's USER_ID: the lead's responsible
            made["ASSIGNED_BY_ID"] = str(user)
        self.finished[call_id] = {**call, "CALL_ID": call_id, "USER_ID": user, "DURATION": duration,
                                  "STATUS_CODE": status}  # fmt: skip
        return {"CALL_ID": call_id, "PORTAL_USER_ID": user, "CALL_DURATION": duration, "CALL_FAILED_CODE": status}

    def _card(self, action: str, params: dict[str, Any]) -> bool:
        method = f"telephony.externalcall.{action}"
        call_id = self._known_call(method, params)
        raw = params.get("USER_ID")
        users = raw if isinstance(raw, list) else [raw]
        ids = tuple(self._int(method, "USER_ID", u) for u in users)
        if call_id in self.finished:
            if action == "hide":
                # Not a violation: a hide that its call's finish crossed (cards and calls go to the
                # portal by separate ways at the same time); the portal refuses it, as finish twice.
                self.late_hides.append(call_id)
                raise Refused("ERROR_NOT_FOUND", "Call is not found or already finished")
            self.errors.append(f"{method}: the call {call_id} is finished already")
        self.cards.append((action, call_id, ids))
        return True

    def _attach(self, params: dict[str, Any]) -> dict[str, Any]:
        method = "telephony.externalCall.attachRecord"
        call_id = self._known_call(method, params)
        if not params.get("FILENAME"):
            self.errors.append(f"{method}: no FILENAME")
        url = str(params.get("RECORD_URL") or "")
        if not url and not params.get("FILE_CONTENT"):
            self.errors.append(f"{method}: neither RECORD_URL nor FILE_CONTENT")
            raise Refused("ERROR_ARGUMENT", "RECORD_URL or FILE_CONTENT is required")
        # Bitrix24: a second attachRecord for a call replaces its file (the tests count them).
        self.attached[call_id] = self.attached.get(call_id, 0) + 1
        if not re.search(r"\.(mp3|wav)$", str(params.get("FILENAME") or ""), re.IGNORECASE):
            self.errors.append(f"{method}: FILENAME must end in .mp3 or .wav")
            raise Refused("ERROR_CORE", "Wrong file extension. Only wav and mp3 are allowed")
        if url and self.fetch_records:
            # Bitrix24 documents a download, not a redirect followed: anything but 200 is an error.
            with httpx.Client(timeout=10, follow_redirects=False) as http:
                got = http.get(url)
            if got.status_code != 200:
                raise Refused("ERROR_CORE", f"Server returns HTTP error code {got.status_code}")
            self.records[call_id] = got.content
        else:
            self.records[call_id] = url
        return {"FILE_ID": len(self.records)}

    def _statistic(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        wanted = (params.get("FILTER") or {}).get("CALL_ID") if isinstance(params.get("FILTER"), dict) else None
        if not wanted:
            self.errors.append("voximplant.statistic.get: not filtered by CALL_ID")
        return [{"CALL_ID": c, "PORTAL_USER_ID": f["USER_ID"], "CALL_DURATION": f["DURATION"],
                 "RECORD_FILE_ID": list(self.records).index(c) + 1 if c in self.records else None}
                for c, f in self.finished.items() if c == wanted]  # fmt: skip

    def _search(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        phone = str(params.get("PHONE_NUMBER") or "")
        if not phone:
            self.errors.append("telephony.externalCall.searchCrmEntities: no PHONE_NUMBER")
        found = [
            e for e in (self.entities.get(phone), self.lead_entities.get(phone) if self.leads_found else None) if e
        ]
        return [{k: v for k, v in e.items() if k != "CALL_ID"} for e in found]

    # -- callback to-dos ---------------------------------------------------------------------------
    def todos(self) -> list[dict[str, Any]]:
        """Every to-do the portal holds (typed), oldest first."""
        return [self.activities[i] for i in sorted(self.activities)]

    def _owner(self, method: str, type_id: Any, owner_id: Any) -> tuple[int, int]:
        kind, entity = self._int(method, "ownerTypeId", type_id), self._int(method, "ownerId", owner_id)
        name = OWNER_TYPE_NAMES.get(kind)
        if name is None:
            self.errors.append(f"{method}: ownerTypeId {kind} is no CRM object type")
            raise Refused("ERROR_ARGUMENT", "ownerTypeId is invalid")
        known = [*self.entities.values(), *self.lead_entities.values()]
        if not any(str(e.get("CRM_ENTITY_TYPE")) == name and str(e.get("CRM_ENTITY_ID")) == str(entity) for e in known):
            raise Refused("NOT_FOUND", f"{name} {entity} is not found", 400)
        return kind, entity

    def _todo_add(self, params: dict[str, Any]) -> dict[str, Any]:
        method = "crm.activity.todo.add"
        if unknown := set(params) - TODO_FIELDS:
            self.errors.append(f"{method}: unknown parameters {sorted(unknown)}")
        for name in ("ownerTypeId", "ownerId", "deadline"):
            if params.get(name) in (None, ""):
                self.errors.append(f"{method}: no {name}")
                raise Refused("ERROR_ARGUMENT", f"{name} is required")
        kind, entity = self._owner(method, params["ownerTypeId"], params["ownerId"])
        deadline = str(params["deadline"])
        try:
            datetime.fromisoformat(deadline)
        except ValueError:
            self.errors.append(f"{method}: deadline is not ISO 8601: {deadline!r}")
            raise Refused("ERROR_ARGUMENT", "deadline is invalid") from None
        responsible = None
        if params.get("responsibleId") not in (None, ""):
            responsible = self._int(method, "responsibleId", params["responsibleId"])
            if self.users and responsible not in self.users:
                raise Refused("ERROR_ARGUMENT", f"responsibleId {responsible}: no such user")
        offsets = params.get("pingOffsets")
        if offsets is not None and not (isinstance(offsets, list) and all(str(o).isdigit() for o in offsets)):
            self.errors.append(f"{method}: pingOffsets must be an array of minutes")
        activity_id = len(self.activities) + 1
        self.activities[activity_id] = {
            "ID": activity_id, "OWNER_TYPE_ID": kind, "OWNER_ID": entity, "PROVIDER_ID": "CRM_TODO",
            "SUBJECT": str(params.get("title") or ""), "DESCRIPTION": str(params.get("description") or ""),
            "DEADLINE": deadline, "RESPONSIBLE_ID": responsible, "COMPLETED": "N",
        }  # fmt: skip
        return {"id": activity_id}

    def _activity_list(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        method = "crm.activity.list"
        if unknown := set(params) - {"filter", "order", "select", "start"}:
            self.errors.append(f"{method}: unknown parameters {sorted(unknown)}")
        wanted = params.get("filter") or {}
        order = params.get("order") or {}
        select = params.get("select") or []
        if not isinstance(wanted, dict) or not isinstance(order, dict) or not isinstance(select, list):
            self.errors.append(f"{method}: filter and order are maps, select a list")
            raise Refused("ERROR_ARGUMENT", "bad list parameters")
        for name in (*wanted, *order, *select):
            if name.lstrip("=!<>%") not in ACTIVITY_FIELDS and name != "*":
                self.errors.append(f"{method}: {name} is no activity field")
        if set(order.values()) - {"ASC", "DESC"}:
            self.errors.append(f"{method}: order is ASC or DESC")
        found = [a for a in self.activities.values() if all(str(a.get(k)) == str(v) for k, v in wanted.items())]
        found.sort(key=lambda a: int(a["ID"]), reverse=order.get("ID") == "DESC")
        start = self._int(method, "start", params.get("start", 0))
        shown = set(select) | {"ID"} if select and "*" not in select else set(ACTIVITY_FIELDS)
        return [{k: v for k, v in a.items() if k in shown} for a in found[start : start + 50]]

    def _activity_update(self, params: dict[str, Any]) -> bool:
        method = "crm.activity.update"
        if unknown := set(params) - {"id", "fields"}:
            self.errors.append(f"{method}: unknown parameters {sorted(unknown)}")
        activity_id = self._int(method, "id", params.get("id"))
        fields = params.get("fields")
        if not isinstance(fields, dict) or not fields:
            self.errors.append(f"{method}: no fields")
            raise Refused("ERROR_ARGUMENT", "fields is required")
        if unknown := set(fields) - ACTIVITY_FIELDS:
            self.errors.append(f"{method}: unknown fields {sorted(unknown)}")
        if "COMPLETED" in fields and fields["COMPLETED"] not in ("Y", "N"):
            self.errors.append(f"{method}: COMPLETED must be Y or N")
        if activity_id not in self.activities:
            raise Refused("ERROR_NOT_FOUND", "Not found")
        self.activities[activity_id].update({k: v for k, v in fields.items() if k in ACTIVITY_FIELDS})
        return True
