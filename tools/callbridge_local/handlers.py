"""Runs a template's Lambda handlers in this process, the way the Lambda Python runtime would.

Modules are imported by name from the function's CodeUri directory, as Lambda imports them from
its task root, and only on first invocation (a cold start), so os.environ must already hold the
function environment and AWS_ENDPOINT_URL when the first event arrives. Events and results make a
JSON round trip, as they do on Lambda, so that a handler returning something Lambda could not
serialise fails here too.

Lambda runs one invocation at a time in an execution environment and starts another environment
when a second request arrives meanwhile. Handlers rely on that: a Powertools resolver keeps the
current event in module state. So a function here is a pool of instances, each used by one
invocation at a time; a second instance is the handler module imported again under its own name
(its module state is its own, the library modules it imports are shared, as a warm process's are).
"""

from __future__ import annotations

import decimal
import importlib
import importlib.util
import json
import logging
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from callbridge_local import iam
from callbridge_local.template import FunctionSpec, Template

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Any]


class HandlerLoadError(RuntimeError):
    """The handler module or function cannot be found or imported."""


class MarshalError(RuntimeError):
    """The handler returned a value Lambda cannot serialise (Runtime.MarshalError on AWS)."""


def prepare_sys_path(template: Template) -> None:
    """Make layer code (/opt/python on Lambda) and every CodeUri (the task root) importable."""
    code_dirs = list(dict.fromkeys(template.code_dir(f) for f in template.functions.values()))
    # Inserted in reverse so that code dirs end up first, then layers, as on Lambda.
    for directory in [*reversed(template.layer_python_dirs()), *reversed(code_dirs)]:
        entry = str(directory)
        if entry not in sys.path:
            sys.path.insert(0, entry)


class LambdaContext:
    """The context object the Lambda Python runtime passes to handlers."""

    def __init__(
        self,
        *,
        function_name: str,
        invoked_function_arn: str,
        memory_limit_in_mb: int,
        timeout_seconds: float,
        region: str,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = invoked_function_arn
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity: Any = None
        self.client_context: Any = None
        self.region = region
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _lambda_json_default(value: Any) -> Any:
    # The Lambda Python runtime serialises Decimal (what DynamoDB returns) as a number.
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _same_file(module: ModuleType, candidates: Iterable[Path]) -> bool:
    filename = getattr(module, "__file__", None)
    if not filename:
        return False
    actual = Path(filename).resolve()
    return any(actual == candidate.resolve() for candidate in candidates)


class LocalFunction:
    """One function of the template, loaded on first invocation."""

    def __init__(
        self,
        spec: FunctionSpec,
        code_dir: Path,
        *,
        function_name: str,
        arn: str,
        region: str,
        role_arn: str | None = None,
    ) -> None:
        self.spec = spec
        self.code_dir = code_dir
        self.function_name = function_name
        self.arn = arn
        self.region = region
        # The execution role (spec.role names its AWS::IAM::Role in the template).
        self.role_arn = role_arn
        self._handler: Handler | None = None
        self._lock = threading.Lock()
        # Instances not serving an invocation right now; the first is the module under its own name.
        self._idle: list[Handler] = []
        self._instances = 0

    @property
    def logical_id(self) -> str:
        return self.spec.logical_id

    def _module_files(self) -> list[Path]:
        base = self.code_dir.joinpath(*self.spec.module_name.split("."))
        return [base.with_suffix(".py"), base / "__init__.py"]

    def load(self) -> Handler:
        with self._lock:
            if self._handler is None:
                self._handler = self._import_handler()
            return self._handler

    def _import_handler(self) -> Handler:
        name, candidates = self.spec.module_name, self._module_files()
        if not any(path.is_file() for path in candidates):
            raise HandlerLoadError(f"{self.logical_id}: handler module {candidates[0]} does not exist")
        loaded = sys.modules.get(name)
        if loaded is not None and not _same_file(loaded, candidates):
            raise HandlerLoadError(
                f"{self.logical_id}: module name {name!r} is already taken by {loaded.__file__}; "
                "handler module names must be unique"
            )
        if str(self.code_dir) not in sys.path:
            sys.path.insert(0, str(self.code_dir))
        module = importlib.import_module(name)
        if not _same_file(module, candidates):
            raise HandlerLoadError(
                f"{self.logical_id}: importing {name!r} found {module.__file__}, not {candidates[0]}"
            )
        handler = getattr(module, self.spec.function_name, None)
        if not callable(handler):
            raise HandlerLoadError(f"{self.logical_id}: {candidates[0]} has no function {self.spec.function_name}")
        log.debug("%s: loaded %s", self.logical_id, self.spec.handler)
        return handler  # type: ignore[no-any-return]

    def _another_instance(self, number: int) -> Handler:
        path = next(path for path in self._module_files() if path.is_file())
        spec = importlib.util.spec_from_file_location(f"{self.spec.module_name}__instance{number}", path)
        if spec is None or spec.loader is None:
            raise HandlerLoadError(f"{self.logical_id}: cannot load {path} again")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler = getattr(module, self.spec.function_name)
        log.debug("%s: started instance %d", self.logical_id, number)
        return handler  # type: ignore[no-any-return]

    def _acquire(self) -> Handler:
        first = self.load()
        with self._lock:
            if self._instances == 0:
                self._instances = 1
                return first
            if self._idle:
                return self._idle.pop()
            self._instances += 1
            number = self._instances
        # Imported outside the lock: a cold start must not hold up the warm instances.
        try:
            return self._another_instance(number)
        except BaseException:
            with self._lock:
                self._instances -= 1
            raise

    def _release(self, handler: Handler) -> None:
        with self._lock:
            self._idle.append(handler)

    @property
    def instances(self) -> int:
        """How many execution environments this function has started so far."""
        with self._lock:
            return self._instances

    def new_context(self) -> LambdaContext:
        return LambdaContext(
            function_name=self.function_name,
            invoked_function_arn=self.arn,
            memory_limit_in_mb=self.spec.memory_size,
            timeout_seconds=self.spec.timeout,
            region=self.region,
        )

    def invoke(self, event: Any) -> Any:
        """Call the handler with a JSON copy of ``event``; returns its JSON-round-tripped result."""
        payload = json.loads(json.dumps(event))
        handler = self._acquire()
        context = self.new_context()
        started = time.monotonic()
        try:
            with iam.acting_as(self.logical_id):  # its AWS calls are checked against its role (iam.py)
                result = handler(payload, context)
        finally:
            self._release(handler)
            elapsed = time.monotonic() - started
            if elapsed > self.spec.timeout:
                log.warning(
                    "%s ran %.1f s, over its Timeout of %d s: Lambda would have stopped it",
                    self.logical_id,
                    elapsed,
                    self.spec.timeout,
                )
            log.debug("%s %s took %.1f ms", self.logical_id, context.aws_request_id, elapsed * 1000)
        try:
            return json.loads(json.dumps(result, default=_lambda_json_default))
        except (TypeError, ValueError) as exc:
            raise MarshalError(f"{self.logical_id}: unable to marshal response: {exc}") from exc


class FunctionRegistry:
    """The template's functions by logical id."""

    def __init__(self, functions: Iterable[LocalFunction]) -> None:
        self._functions = {f.logical_id: f for f in functions}

    @classmethod
    def build(
        cls,
        template: Template,
        names: Mapping[str, str],
        arns: Mapping[str, str],
        region: str,
        only: Iterable[str] | None = None,
        roles: Mapping[str, str | None] | None = None,
    ) -> FunctionRegistry:
        wanted = set(template.functions) if only is None else set(only)
        return cls(
            LocalFunction(
                spec,
                template.code_dir(spec),
                function_name=names[spec.logical_id],
                arn=arns[spec.logical_id],
                region=region,
                role_arn=(roles or {}).get(spec.logical_id),
            )
            for spec in template.functions.values()
            if spec.logical_id in wanted
        )

    def __getitem__(self, logical_id: str) -> LocalFunction:
        return self._functions[logical_id]

    def __contains__(self, logical_id: object) -> bool:
        return logical_id in self._functions

    def __iter__(self) -> Iterator[LocalFunction]:
        return iter(self._functions.values())

    def __len__(self) -> int:
        return len(self._functions)
