"""Fake MiniCRM Call log API (docs/protocols/minicrm.md): `POST /Api/CallLog`, validating every request against
the spec, de-duplicating identical records (answered `Exists`) and recording what arrived. With
`system_id` and `general_key` also the part of MiniCRM's general API (`/Api/R3`, HTTP Basic) that
callback ToDos use: contacts by phone, cards by main contact, a card's ToDos, ToDo create (PUT) and
close. `fail_after_save` answers the next N ToDo creates or closes (`todo/create`, `todo/update`) or
call logs (`calllog`) with a 500 after saving them. With `recording_url` (the URL template MiniCRM
support is given, `{ref}` for the ReferenceId) and `recording_auth`, it downloads each saved record's
recording the moment the record is saved, as its downloader may (docs/minicrm.md): `downloads` holds
what each download got."""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.crm_server import Stall

DATE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
FIELDS = {"Number", "Duration", "CallType", "Date", "ReferenceId"}
TODO_FIELDS = {"ProjectId", "UserId", "Type", "Comment", "Deadline", "Status"}


@dataclass(frozen=True)
class Download:
    status: int
    content_type: str
    body: bytes


@dataclass
class FakeMiniCrm:
    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)  # accepted request bodies
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # UserExtension -> saved records
    received: int = 0  # records received, repeats included
    errors: list[str] = field(default_factory=list)  # spec violations seen
    down_status: int | None = None
    stall: Stall = field(default_factory=Stall)
    reject_numbers: set[str] = field(default_factory=set)  # answered as Skipped (unknown number)
    attempts: int = 0
    system_id: int | None = None
    general_key: str | None = None
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)  # Id -> {Id, Name, Phone}
    projects: dict[int, dict[str, Any]] = field(default_factory=dict)  # Id -> {Id, Name, MainContactId}
    todos: dict[int, dict[str, Any]] = field(default_factory=dict)  # Id -> ToDo as created, then updated
    fail_after_save: dict[str, int] = field(default_factory=dict)  # "todo/create" | "todo/update" | "calllog" -> N
    lost_logs: list[list[dict[str, Any]]] = field(default_factory=list)  # call logs saved, answered 500
    recording_url: str | None = None  # e.g. "https://bridge/v1/acc/recordings?Rec={ref}"
    recording_auth: tuple[str, str] | None = None  # the Basic credentials given with the template
    downloads: dict[str, Download] = field(default_factory=dict)  # ReferenceId -> its first download
    _downloaders: list[threading.Thread] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _violation(self, message: str) -> tuple[int, Any, dict[str, str]]:
        self.errors.append(message)
        return 400, {"error": message}, {}

    def handle(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.attempts += 1
        if self.stall.hang():
            return 504, {"error": "gateway timeout"}, {}
        with self._lock:
            if self.down_status is not None:
                return self.down_status, {"error": "down"}, {}
            if path.startswith("/Api/R3/"):
                return self._general(method, path, query, headers, body)
            if (method, path) != ("POST", "/Api/CallLog"):
                return 404, {"error": "not found"}, {}
            if "application/json" not in headers.get("content-type", ""):
                return self._violation("body must be JSON")
            try:
                request = json.loads(body)
            except ValueError:
                return self._violation("body is not JSON")
            if request.get("ApiKey") != self.api_key:
                return 401, {"error": "bad ApiKey"}, {}
            extension = request.get("UserExtension")
            if not isinstance(extension, str) or not extension:
                return self._violation("UserExtension must be a non-empty string")
            data = request.get("Data")
            if not isinstance(data, list) or not data:
                return self._violation("Data must be a non-empty array (we always send an array)")
            if set(request) - {"ApiKey", "UserExtension", "Data"}:
                return self._violation(f"unknown fields {sorted(set(request) - {'ApiKey', 'UserExtension', 'Data'})}")
            counts = {"Skipped": 0, "Processed": 0, "Exists": 0}
            for record in data:
                problem = self._problem(record)
                if problem:
                    return self._violation(problem)
                self.received += 1
                # A number without a digit (`anonymous`) is no contact MiniCRM can file the call
                # under: skipped, as a record without its Number (docs/protocols/minicrm.md).
                if record["Number"] in self.reject_numbers or not any(c.isdigit() for c in record["Number"]):
                    counts["Skipped"] += 1
                    continue
                identity = json.dumps([extension, record], sort_keys=True)
                if identity in self._seen:
                    counts["Exists"] += 1
                    continue
                self._seen.add(identity)
                self.records.setdefault(extension, []).append(record)
                counts["Processed"] += 1
                if self.recording_url and "ReferenceId" in record:
                    downloader = threading.Thread(target=self._download, args=(record["ReferenceId"],), daemon=True)
                    self._downloaders.append(downloader)
                    downloader.start()
            self.requests.append(request)
            if self._saved_then_failed("calllog"):
                self.lost_logs.append(data)
                return 500, {"error": "Internal Server Error"}, {}
            return 200, counts, {}

    @staticmethod
    def _problem(record: Any) -> str | None:
        if not isinstance(record, dict):
            return "a Data item is not an object"
        if set(record) - FIELDS:
            return f"unknown record fields {sorted(set(record) - FIELDS)}"
        if not isinstance(record.get("Number"), str) or not record["Number"]:
            return "Number must be a non-empty string"
        if not isinstance(record.get("Duration"), int) or record["Duration"] < 0:
            return "Duration must be a non-negative integer"
        if record.get("CallType") not in (0, 1, 2):
            return f"CallType {record.get('CallType')!r} is not 0, 1 or 2"
        if not isinstance(record.get("Date"), str) or not DATE.match(record["Date"]):
            return f"Date {record.get('Date')!r} is not YYYY-MM-DD HH:MM:SS"
        if "ReferenceId" in record and (not isinstance(record["ReferenceId"], str) or not record["ReferenceId"]):
            return "ReferenceId must be a non-empty string"
        return None

    def _download(self, reference: str) -> None:
        assert self.recording_url is not None
        request = urllib.request.Request(self.recording_url.replace("{ref}", reference))
        if self.recording_auth:
            token = base64.b64encode(":".join(self.recording_auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # follows the 302 to S3
                got = Download(response.status, response.headers.get("Content-Type", ""), response.read())
        except urllib.error.HTTPError as error:
            got = Download(error.code, error.headers.get("Content-Type", ""), error.read())
        except OSError as error:
            got = Download(0, "", str(error).encode())
        with self._lock:
            self.downloads.setdefault(reference, got)

    def wait_for_downloads(self, timeout: float = 60.0) -> None:
        with self._lock:
            downloaders = list(self._downloaders)
        for downloader in downloaders:
            downloader.join(timeout)

    def all_records(self) -> list[tuple[str, dict[str, Any]]]:
        return [(ext, r) for ext, items in self.records.items() for r in items]

    # -- the general API (/Api/R3): what callback ToDos use ------------------------------------------
    def _general(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        expected = base64.b64encode(f"{self.system_id}:{self.general_key}".encode()).decode()
        if self.general_key is None or headers.get("authorization") != f"Basic {expected}":
            return 401, {"error": "Unauthorized"}, {}
        if (method, path) == ("GET", "/Api/R3/Contact"):
            if "Phone" not in query:
                return self._violation("we search contacts by Phone")
            digits = _digits(query["Phone"])
            found = {str(i): c for i, c in self.contacts.items() if _digits(c["Phone"])[-9:] == digits[-9:]}
            return 200, {"Count": len(found), "Results": found}, {}
        if (method, path) == ("GET", "/Api/R3/Project"):
            if "MainContactId" not in query:
                return self._violation("we search cards by MainContactId")
            found = {str(i): p for i, p in self.projects.items() if str(p["MainContactId"]) == query["MainContactId"]}
            return 200, {"Count": len(found), "Results": found}, {}
        match = re.fullmatch(r"/Api/R3/ToDoList/(\d+)", path)
        if match and method == "GET":
            project = int(match.group(1))
            if project not in self.projects:
                return 404, {"error": "Project not found"}, {}
            found = {str(i): t for i, t in self.todos.items() if t["ProjectId"] == project}
            return 200, {"Count": len(found), "Results": found}, {}
        if path.rstrip("/") == "/Api/R3/ToDo":
            if method != "PUT":
                return 405, {"error": "Method not allowed"}, {}
            return self._create_todo(body)
        match = re.fullmatch(r"/Api/R3/ToDo/(\d+)", path)
        if match and method == "PUT":
            return self._update_todo(int(match.group(1)), body)
        return 404, {"error": "not found"}, {}

    def _saved_then_failed(self, endpoint: str) -> bool:
        left = self.fail_after_save.get(endpoint, 0)
        if left <= 0:
            return False
        self.fail_after_save[endpoint] = left - 1
        return True

    def _create_todo(self, body: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            todo = json.loads(body)
        except ValueError:
            return self._violation("ToDo body is not JSON")
        if not isinstance(todo, dict) or set(todo) - TODO_FIELDS:
            return self._violation(
                f"ToDo: unknown fields {sorted(set(todo) - TODO_FIELDS) if isinstance(todo, dict) else todo}"
            )
        if todo.get("ProjectId") not in self.projects:
            return self._violation("ToDo ProjectId must be an existing card")
        if not isinstance(todo.get("UserId"), int):
            return self._violation("ToDo UserId must be a MiniCRM user id (integer)")
        if not isinstance(todo.get("Comment"), str) or not todo["Comment"]:
            return self._violation("ToDo Comment is required")
        if not DATE.match(str(todo.get("Deadline", ""))):
            return self._violation(f"ToDo Deadline {todo.get('Deadline')!r} is not YYYY-MM-DD HH:MM:SS")
        new_id = 500 + len(self.todos)
        self.todos[new_id] = {**todo, "Id": new_id, "Status": "Open"}
        if self._saved_then_failed("todo/create"):
            return 500, {"error": "Internal Server Error"}, {}
        return 200, {"Id": new_id}, {}

    def _update_todo(self, todo_id: int, body: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            update = json.loads(body)
        except ValueError:
            return self._violation("ToDo body is not JSON")
        if not isinstance(update, dict) or set(update) - TODO_FIELDS:
            return self._violation("ToDo update: unknown fields")
        if todo_id not in self.todos:
            return 404, {"error": "ToDo not found"}, {}
        self.todos[todo_id].update(update)
        if self._saved_then_failed("todo/update"):
            return 500, {"error": "Internal Server Error"}, {}
        return 200, {"Id": todo_id}, {}


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))
