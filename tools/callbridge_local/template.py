"""A typed, read-only view of a SAM template: the parts the local runtime emulates.

Values that may hold intrinsics (environment variables, queue ARNs, resource properties) are kept
raw here; intrinsics.py resolves them once the resources exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callbridge_local import cfn_yaml

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
DYNAMODB_TABLE = "AWS::DynamoDB::Table"
SQS_QUEUE = "AWS::SQS::Queue"
S3_BUCKET = "AWS::S3::Bucket"
SSM_PARAMETER = "AWS::SSM::Parameter"
LAYER_TYPES = ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")

# Lambda's own defaults, used when neither the function nor Globals set them.
LAMBDA_DEFAULT_TIMEOUT = 3
LAMBDA_DEFAULT_MEMORY = 128
SQS_DEFAULT_BATCH_SIZE = 10


class TemplateError(ValueError):
    """The template is well-formed YAML but not a template this runtime can emulate."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    default: Any | None
    allowed_values: tuple[Any, ...] | None = None
    min_value: float | None = None
    max_value: float | None = None


@dataclass(frozen=True)
class Resource:
    logical_id: str
    type: str
    properties: Mapping[str, Any]
    condition: str | None = None


@dataclass(frozen=True)
class HttpApiEvent:
    name: str
    # None for an event without Path: the API's catch-all $default route.
    path: str | None
    method: str
    # Raw ApiId (usually {"Ref": "HttpApi"}); None means SAM's implicit ServerlessHttpApi.
    api_id: Any | None


@dataclass(frozen=True)
class SqsEvent:
    name: str
    # Raw Queue property: an ARN, usually {"Fn::GetAtt": [Queue, "Arn"]}.
    queue: Any
    batch_size: int
    function_response_types: tuple[str, ...]
    enabled: bool = True

    @property
    def reports_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


@dataclass(frozen=True)
class ScheduleEvent:
    name: str
    # "Schedule" (EventBridge rule) or "ScheduleV2" (EventBridge Scheduler).
    kind: str
    expression: str
    # The Input property: a JSON text sent instead of the "Scheduled Event" envelope.
    input: str | None
    enabled: bool


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_uri: str
    handler: str
    timeout: int
    memory_size: int
    # Globals.Function.Environment.Variables merged with the function's own, intrinsics unresolved.
    environment: Mapping[str, Any]
    http_events: tuple[HttpApiEvent, ...] = ()
    sqs_events: tuple[SqsEvent, ...] = ()
    schedule_events: tuple[ScheduleEvent, ...] = ()
    # (event name, event type) of events the local runtime does not emulate.
    unsupported_events: tuple[tuple[str, str], ...] = ()
    condition: str | None = None

    @property
    def module_name(self) -> str:
        return self.handler.rpartition(".")[0].replace("/", ".")

    @property
    def function_name(self) -> str:
        return self.handler.rpartition(".")[2]


@dataclass(frozen=True)
class Template:
    path: Path
    raw: Mapping[str, Any]
    parameters: Mapping[str, Parameter]
    resources: Mapping[str, Resource]
    functions: Mapping[str, FunctionSpec]
    conditions: Mapping[str, Any] = field(default_factory=dict)
    mappings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resources_of_type(self, *types: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type in types]

    @property
    def tables(self) -> list[Resource]:
        return self.resources_of_type(DYNAMODB_TABLE)

    @property
    def queues(self) -> list[Resource]:
        return self.resources_of_type(SQS_QUEUE)

    @property
    def buckets(self) -> list[Resource]:
        return self.resources_of_type(S3_BUCKET)

    @property
    def ssm_parameters(self) -> list[Resource]:
        return self.resources_of_type(SSM_PARAMETER)

    def code_dir(self, function: FunctionSpec) -> Path:
        return (self.base_dir / function.code_uri).resolve()

    def layer_python_dirs(self) -> list[Path]:
        """Directories Lambda would put on sys.path for the template's layers (/opt/python)."""
        dirs: list[Path] = []
        for layer in self.resources_of_type(*LAYER_TYPES):
            content = layer.properties.get("ContentUri", layer.properties.get("Content"))
            if isinstance(content, str):
                candidate = (self.base_dir / content / "python").resolve()
                if candidate.is_dir():
                    dirs.append(candidate)
        return dirs


def _is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = next(iter(value))
    return key in ("Ref", "Condition") or str(key).startswith("Fn::")


def merge_globals(global_props: Mapping[str, Any], own: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's Globals merge: maps merge key by key, lists concatenate, anything else is overridden.

    Intrinsics are values, not maps, so a function's !Ref replaces a global one instead of merging.
    """
    merged: dict[str, Any] = dict(global_props)
    for key, value in own.items():
        current = merged.get(key)
        if (
            isinstance(current, dict)
            and isinstance(value, dict)
            and not _is_intrinsic(current)
            and not _is_intrinsic(value)
        ):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = value
    return merged


def _as_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() == "true"


def _as_int(value: Any, default: int, what: str) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TemplateError(f"{what} must be a number, got {value!r}") from None


def _parse_events(
    logical_id: str, events: Mapping[str, Any], parameters: Mapping[str, Parameter] | None = None
) -> tuple[list[HttpApiEvent], list[SqsEvent], list[ScheduleEvent], list[tuple[str, str]]]:
    http: list[HttpApiEvent] = []
    sqs: list[SqsEvent] = []
    schedules: list[ScheduleEvent] = []
    unsupported: list[tuple[str, str]] = []
    for name, event in events.items():
        if not isinstance(event, dict):
            raise TemplateError(f"{logical_id}.Events.{name} must be a mapping")
        kind = str(event.get("Type", ""))
        props: Mapping[str, Any] = event.get("Properties") or {}
        where = f"{logical_id}.Events.{name}"
        if kind == "HttpApi":
            path = props.get("Path")
            http.append(
                HttpApiEvent(
                    name=name,
                    path=None if path is None else str(path),
                    method=str(props.get("Method", "ANY")).upper(),
                    api_id=props.get("ApiId"),
                )
            )
        elif kind == "SQS":
            if "Queue" not in props:
                raise TemplateError(f"{where} has no Queue")
            sqs.append(
                SqsEvent(
                    name=name,
                    queue=props["Queue"],
                    batch_size=_as_int(props.get("BatchSize"), SQS_DEFAULT_BATCH_SIZE, f"{where}.BatchSize"),
                    function_response_types=tuple(str(t) for t in props.get("FunctionResponseTypes") or ()),
                    enabled=_as_bool(props.get("Enabled"), True),
                )
            )
        elif kind in ("Schedule", "ScheduleV2"):
            expression = props.get("Schedule" if kind == "Schedule" else "ScheduleExpression")
            if isinstance(expression, dict) and set(expression) == {"Ref"} and parameters:
                # A schedule that is a template Parameter runs locally at the parameter's default.
                parameter = parameters.get(str(expression["Ref"]))
                expression = parameter.default if parameter is not None else expression
            if not isinstance(expression, str):
                raise TemplateError(f"{where} needs a literal schedule expression, got {expression!r}")
            state = props.get("State")
            enabled = str(state).upper() != "DISABLED" if state is not None else _as_bool(props.get("Enabled"), True)
            raw_input = props.get("Input")
            schedules.append(
                ScheduleEvent(
                    name=name,
                    kind=kind,
                    expression=expression.strip(),
                    input=None if raw_input is None else str(raw_input),
                    enabled=enabled,
                )
            )
        else:
            unsupported.append((name, kind))
    return http, sqs, schedules, unsupported


def _parse_function(
    logical_id: str, props: Mapping[str, Any], condition: str | None, parameters: Mapping[str, Parameter] | None = None
) -> FunctionSpec:
    code_uri = props.get("CodeUri", ".")
    if not isinstance(code_uri, str):
        raise TemplateError(f"{logical_id}.CodeUri must be a local directory, got {code_uri!r}")
    handler = props.get("Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise TemplateError(f"{logical_id}.Handler must look like module.function, got {handler!r}")
    env_props = props.get("Environment") or {}
    variables = (env_props.get("Variables") or {}) if isinstance(env_props, dict) else {}
    if not isinstance(variables, dict):
        raise TemplateError(f"{logical_id}.Environment.Variables must be a mapping")
    http, sqs, schedules, unsupported = _parse_events(logical_id, props.get("Events") or {}, parameters)
    return FunctionSpec(
        logical_id=logical_id,
        code_uri=code_uri,
        handler=handler,
        timeout=_as_int(props.get("Timeout"), LAMBDA_DEFAULT_TIMEOUT, f"{logical_id}.Timeout"),
        memory_size=_as_int(props.get("MemorySize"), LAMBDA_DEFAULT_MEMORY, f"{logical_id}.MemorySize"),
        environment=dict(variables),
        http_events=tuple(http),
        sqs_events=tuple(sqs),
        schedule_events=tuple(schedules),
        unsupported_events=tuple(unsupported),
        condition=condition,
    )


def parse_template(raw: Any, path: Path) -> Template:
    if not isinstance(raw, dict) or not isinstance(raw.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    parameters = {
        name: Parameter(
            name=name,
            type=str(spec.get("Type", "String")),
            default=spec.get("Default"),
            allowed_values=tuple(spec["AllowedValues"]) if spec.get("AllowedValues") else None,
            min_value=None if spec.get("MinValue") is None else float(spec["MinValue"]),
            max_value=None if spec.get("MaxValue") is None else float(spec["MaxValue"]),
        )
        for name, spec in (raw.get("Parameters") or {}).items()
    }
    resources: dict[str, Resource] = {}
    for logical_id, spec in raw["Resources"].items():
        if not isinstance(spec, dict) or "Type" not in spec:
            raise TemplateError(f"resource {logical_id} has no Type")
        condition = spec.get("Condition")
        resources[logical_id] = Resource(
            logical_id=logical_id,
            type=str(spec["Type"]),
            properties=spec.get("Properties") or {},
            condition=None if condition is None else str(condition),
        )
    global_function = (raw.get("Globals") or {}).get("Function") or {}
    functions = {
        r.logical_id: _parse_function(
            r.logical_id, merge_globals(global_function, r.properties), r.condition, parameters
        )
        for r in resources.values()
        if r.type == SERVERLESS_FUNCTION
    }
    return Template(
        path=path,
        raw=raw,
        parameters=parameters,
        resources=resources,
        functions=functions,
        conditions=raw.get("Conditions") or {},
        mappings=raw.get("Mappings") or {},
    )


def load_template(path: Path | str) -> Template:
    resolved = Path(path).resolve()
    return parse_template(cfn_yaml.load(resolved), resolved)
