"""Local-only control endpoints under /_local/, which exist in no template and on no AWS.

They let tests and developers trigger what AWS would trigger on its own time:

- ``POST /_local/schedules/{FunctionLogicalId}[?event=RuleLogicalId]`` invokes the function once
  with its scheduled event (a DISABLED rule's too) and answers the handler's result as JSON (500 with errorType/errorMessage if
  the handler raised);
- ``POST /_local/queues/drain[?timeout=30][&delayed=0]`` processes every queue-driven function's
  queue until all are empty and answers counts (200 when drained, 504 when the timeout passed
  first); ``delayed=0`` does not wait for messages whose delay has not run out;
- ``GET /_local/env`` answers the AWS endpoint and the functions' merged environment;
- ``GET /_local/routes`` answers the HTTP routes and the functions behind them;
- ``GET /_local/iam`` answers every statement of the functions' roles with the calls it allowed,
  and the calls denied (iam.py);
- ``POST /_local/faults/dynamodb?error=<Code>`` makes every DynamoDB write fail with that error until
  ``?error=`` (empty) is posted (faults.py: a store outage for tests); ``GET`` answers the state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

from callbridge_local import faults, iam
from callbridge_local.drivers import QueueDriver, ScheduleSource
from callbridge_local.handlers import FunctionRegistry
from callbridge_local.httpapi import HttpResponse, json_response
from callbridge_local.routing import RouteTable

log = logging.getLogger(__name__)

PREFIX = "/_local/"
DEFAULT_DRAIN_TIMEOUT = 30.0
MAX_DRAIN_TIMEOUT = 300.0


class ControlApi:
    def __init__(
        self,
        *,
        functions: FunctionRegistry,
        routes: RouteTable,
        queues: QueueDriver,
        schedules: Iterable[ScheduleSource],
        schedule_event: Callable[[ScheduleSource], Any],
        info: Mapping[str, Any],
    ) -> None:
        self.functions = functions
        self.routes = routes
        self.queues = queues
        self.schedules = list(schedules)
        self.schedule_event = schedule_event
        self.info = dict(info)

    def handle(self, method: str, raw_path: str, raw_query: str) -> HttpResponse:
        query = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        parts = [unquote(p) for p in raw_path[len(PREFIX) :].strip("/").split("/")]
        if parts[:1] == ["schedules"] and len(parts) == 2:
            return self._only(method, "POST") or self._run_schedule(parts[1], query.get("event"))
        if parts == ["queues", "drain"]:
            return self._only(method, "POST") or self._drain(query.get("timeout"), query.get("delayed"))
        if parts == ["env"]:
            return self._only(method, "GET") or json_response(200, self.info)
        if parts == ["iam"]:
            enforcer = iam.current()
            if enforcer is None:
                return json_response(404, {"message": "IAM is not enforced"})
            return self._only(method, "GET") or json_response(200, enforcer.report())
        if parts == ["faults", "dynamodb"]:
            return self._faults(method, query)
        if parts == ["routes"]:
            return self._only(method, "GET") or json_response(
                200, [{"routeKey": r.route_key, "function": r.function_id} for r in self.routes.routes]
            )
        return json_response(404, {"message": "Not Found"})

    @staticmethod
    def _only(method: str, allowed: str) -> HttpResponse | None:
        if method == allowed:
            return None
        return json_response(405, {"message": f"use {allowed}"}, [("allow", allowed)])

    def _run_schedule(self, function_id: str, event_name: str | None) -> HttpResponse:
        if function_id not in self.functions:
            return json_response(404, {"message": f"no function {function_id} in the template"})
        schedules = [s for s in self.schedules if s.function.logical_id == function_id]
        if event_name is not None:
            schedules = [s for s in schedules if s.schedule.name == event_name]
        if not schedules:
            return json_response(404, {"message": f"{function_id} has no schedule {event_name or ''}".strip()})
        if len(schedules) > 1:
            names = ", ".join(s.schedule.name for s in schedules)
            return json_response(400, {"message": f"{function_id} has several schedules; add ?event= one of {names}"})
        source = schedules[0]
        try:
            result = source.function.invoke(self.schedule_event(source))
        except Exception as exc:
            log.exception("%s failed", source.label)
            return json_response(500, {"errorType": type(exc).__name__, "errorMessage": str(exc)})
        return json_response(200, result)

    @staticmethod
    def _faults(method: str, query: Mapping[str, str]) -> HttpResponse:
        if method == "POST":
            try:
                faults.arm(query.get("error") or None)
            except ValueError as exc:
                return json_response(400, {"message": str(exc)})
        elif method != "GET":
            return json_response(405, {"message": "use GET or POST"}, [("allow", "GET, POST")])
        return json_response(200, faults.state())

    def _drain(self, raw_timeout: str | None, raw_delayed: str | None = None) -> HttpResponse:
        if raw_delayed not in (None, "0", "1"):
            return json_response(400, {"message": f"delayed must be 0 or 1, got {raw_delayed!r}"})
        try:
            timeout = DEFAULT_DRAIN_TIMEOUT if raw_timeout is None else float(raw_timeout)
        except ValueError:
            return json_response(400, {"message": f"timeout must be a number of seconds, got {raw_timeout!r}"})
        if not 0 <= timeout <= MAX_DRAIN_TIMEOUT:
            return json_response(400, {"message": f"timeout must be within 0..{MAX_DRAIN_TIMEOUT:g} s"})
        report = self.queues.drain(timeout, delayed=raw_delayed != "0")
        return json_response(200 if report.drained else 504, report.as_json())
