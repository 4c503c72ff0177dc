"""A typed, read-only view of a SAM template: the parts the local runtime emulates.

The runtime supports what template.yaml uses and refuses the rest by name: a resource type it
neither emulates nor knows to skip, a property of an emulated resource or event it would not honour,
an event type it does not drive. Resources it skips (logs, alarms, networking...) are not looked
into at all, so whatever they contain cannot stop the runtime.

Values that may hold intrinsics (environment variables, queue ARNs, resource properties) are kept
raw here; intrinsics.py resolves them once the resources exist.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callbridge_local import cfn_yaml

SAM_TRANSFORM = "AWS::Serverless-2016-10-31"

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"
SERVERLESS_HTTP_API = "AWS::Serverless::HttpApi"
DYNAMODB_TABLE = "AWS::DynamoDB::Table"
SQS_QUEUE = "AWS::SQS::Queue"
S3_BUCKET = "AWS::S3::Bucket"


@dataclass(frozen=True)
class Support:
    """What the runtime does with the properties of one resource type (or event type).

    ``read``: used locally; only these are resolved, so intrinsics elsewhere never matter.
    ``ignored``: accepted, but without local effect. Any other property is refused, unless
    ``deployment_settings`` says the rest only configure the deployed resource (IAM, runtime
    version, tracing, VPC...), which the runtime, running handlers in-process, cannot honour anyway.
    """

    read: frozenset[str]
    ignored: frozenset[str] = frozenset()
    deployment_settings: bool = False


def _support(read: Collection[str], ignored: Collection[str] = (), *, deployment_settings: bool = False) -> Support:
    return Support(frozenset(read), frozenset(ignored), deployment_settings)


# Resource types the runtime emulates: created in moto, run in process, or routed by the gateway.
EMULATED: Mapping[str, Support] = {
    SERVERLESS_FUNCTION: _support(
        ("Handler", "CodeUri", "Timeout", "MemorySize", "Environment", "Events"), deployment_settings=True
    ),
    SERVERLESS_LAYER: _support(("ContentUri",), deployment_settings=True),
    # Throttling is API Gateway's, before any function runs: nothing to emulate in process.
    SERVERLESS_HTTP_API: _support((), ("Description", "DefaultRouteSettings")),
    # Backups, encryption at rest and expiry have nothing to show locally (moto expires no items;
    # the code checks expires_at on read, as DynamoDB's TTL is late anyway).
    DYNAMODB_TABLE: _support(
        ("AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes"),
        ("TimeToLiveSpecification", "PointInTimeRecoverySpecification", "SSESpecification"),
    ),
    SQS_QUEUE: _support(("VisibilityTimeout", "MessageRetentionPeriod", "RedrivePolicy"), ("SqsManagedSseEnabled",)),
    S3_BUCKET: _support(
        (),
        ("BucketEncryption", "PublicAccessBlockConfiguration", "OwnershipControls", "LifecycleConfiguration"),
    ),
}

# Resource types deliberately not emulated, and why; the runtime does not look into them.
SKIPPED: Mapping[str, str] = {
    "AWS::Logs::LogGroup": "functions log to the console",
    "AWS::CloudWatch::Alarm": "there is no CloudWatch",
    "AWS::CloudWatch::Dashboard": "there is no CloudWatch",
    "AWS::SNS::Topic": "alarms are not emulated",
    "AWS::SNS::Subscription": "alarms are not emulated",
    "AWS::S3::BucketPolicy": "IAM is not emulated",
}
SKIPPED_PREFIXES: Mapping[str, str] = {"AWS::EC2::": "networking is not emulated"}

# Event types the runtime drives, with the event properties it understands.
EVENTS: Mapping[str, Support] = {
    "HttpApi": _support(("ApiId", "Path", "Method")),
    # Locally a batch is what is visible now (drivers.py): waiting out a batching window only adds latency.
    "SQS": _support(("Queue", "BatchSize", "FunctionResponseTypes"), ("MaximumBatchingWindowInSeconds",)),
    "Schedule": _support(("Schedule",), ("Description",)),
}

# Lambda's own defaults, used when neither the function nor Globals set them.
LAMBDA_DEFAULT_TIMEOUT = 3
LAMBDA_DEFAULT_MEMORY = 128
SQS_DEFAULT_BATCH_SIZE = 10


class TemplateError(ValueError):
    """The template is well-formed YAML but not a template this runtime can emulate."""


def skip_reason(resource_type: str) -> str | None:
    """Why the runtime skips resources of this type; None if it does not skip them."""
    if resource_type in SKIPPED:
        return SKIPPED[resource_type]
    return next((why for prefix, why in SKIPPED_PREFIXES.items() if resource_type.startswith(prefix)), None)


def check_properties(where: str, what: str, properties: Mapping[str, Any], support: Support) -> None:
    if support.deployment_settings:
        return
    unknown = sorted(set(properties) - support.read - support.ignored)
    if unknown:
        known = ", ".join(sorted(support.read | support.ignored)) or "none"
        raise TemplateError(
            f"{where}: {what} property {', '.join(unknown)} is not supported by the local runtime (supported: {known})"
        )


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

    def read_properties(self) -> dict[str, Any]:
        """The properties the runtime uses (raw); empty for a type it does not emulate."""
        support = EMULATED.get(self.type)
        if support is None:
            return {}
        return {key: value for key, value in self.properties.items() if key in support.read}


@dataclass(frozen=True)
class HttpApiEvent:
    name: str
    # None for an event without Path: the API's catch-all $default route.
    path: str | None
    method: str
    # Raw ApiId, usually {"Ref": "HttpApi"}.
    api_id: Any


@dataclass(frozen=True)
class SqsEvent:
    name: str
    # Raw Queue property: an ARN, usually {"Fn::GetAtt": [Queue, "Arn"]}.
    queue: Any
    batch_size: int
    function_response_types: tuple[str, ...]

    @property
    def reports_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


@dataclass(frozen=True)
class ScheduleEvent:
    """An EventBridge rule (SAM's Schedule event) that invokes the function with a Scheduled Event."""

    name: str
    expression: str


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

    def code_dir(self, function: FunctionSpec) -> Path:
        return (self.base_dir / function.code_uri).resolve()

    def layer_python_dirs(self) -> list[Path]:
        """Directories Lambda would put on sys.path for the template's layers (/opt/python)."""
        dirs: list[Path] = []
        for layer in self.resources_of_type(SERVERLESS_LAYER):
            content = layer.properties.get("ContentUri")
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


def _as_int(value: Any, default: int, what: str) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TemplateError(f"{what} must be a number, got {value!r}") from None


def _parse_events(
    logical_id: str, events: Mapping[str, Any], parameters: Mapping[str, Parameter]
) -> tuple[list[HttpApiEvent], list[SqsEvent], list[ScheduleEvent]]:
    http: list[HttpApiEvent] = []
    sqs: list[SqsEvent] = []
    schedules: list[ScheduleEvent] = []
    for name, event in events.items():
        where = f"{logical_id}.Events.{name}"
        if not isinstance(event, dict):
            raise TemplateError(f"{where} must be a mapping")
        kind = str(event.get("Type", ""))
        if kind not in EVENTS:
            raise TemplateError(
                f"{where}: event type {kind!r} is not supported by the local runtime (supported: {', '.join(EVENTS)})"
            )
        props: Mapping[str, Any] = event.get("Properties") or {}
        check_properties(where, f"{kind} event", props, EVENTS[kind])
        if kind == "HttpApi":
            if "ApiId" not in props:
                raise TemplateError(
                    f"{where} has no ApiId: SAM's implicit API is not supported by the local runtime; "
                    "declare an AWS::Serverless::HttpApi and set ApiId: !Ref <it>"
                )
            path = props.get("Path")
            http.append(
                HttpApiEvent(
                    name=name,
                    path=None if path is None else str(path),
                    method=str(props.get("Method", "ANY")).upper(),
                    api_id=props["ApiId"],
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
                )
            )
        else:
            expression = props.get("Schedule")
            if isinstance(expression, dict) and set(expression) == {"Ref"}:
                # A schedule that is a template Parameter runs locally at the parameter's default.
                parameter = parameters.get(str(expression["Ref"]))
                expression = parameter.default if parameter is not None else expression
            if not isinstance(expression, str):
                raise TemplateError(f"{where} needs a literal schedule expression, got {expression!r}")
            schedules.append(ScheduleEvent(name=name, expression=expression.strip()))
    return http, sqs, schedules


def _parse_function(
    logical_id: str, props: Mapping[str, Any], condition: str | None, parameters: Mapping[str, Parameter]
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
    http, sqs, schedules = _parse_events(logical_id, props.get("Events") or {}, parameters)
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
        condition=condition,
    )


def _parse_resource(logical_id: str, spec: Any) -> Resource:
    if not isinstance(spec, dict) or "Type" not in spec:
        raise TemplateError(f"resource {logical_id} has no Type")
    kind = str(spec["Type"])
    properties = spec.get("Properties") or {}
    condition = spec.get("Condition")
    if kind in EMULATED:
        if not isinstance(properties, dict):
            raise TemplateError(f"resource {logical_id}: Properties must be a mapping")
        check_properties(f"resource {logical_id}", kind, properties, EMULATED[kind])
    elif skip_reason(kind) is None:
        emulated = ", ".join(EMULATED)
        skipped = ", ".join([*SKIPPED, *(f"{prefix}*" for prefix in SKIPPED_PREFIXES)])
        raise TemplateError(
            f"resource {logical_id}: type {kind} is not supported by the local runtime "
            f"(it emulates {emulated}; it skips {skipped})"
        )
    return Resource(
        logical_id=logical_id,
        type=kind,
        properties=properties if isinstance(properties, dict) else {},
        condition=None if condition is None else str(condition),
    )


def parse_template(raw: Any, path: Path) -> Template:
    if not isinstance(raw, dict) or not isinstance(raw.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    transforms = raw.get("Transform")
    for transform in transforms if isinstance(transforms, list) else [transforms]:
        if transform is not None and transform != SAM_TRANSFORM:
            raise TemplateError(f"Transform {transform!r} is not supported by the local runtime (only {SAM_TRANSFORM})")
    globals_section = raw.get("Globals") or {}
    unsupported_globals = sorted(set(globals_section) - {"Function"})
    if unsupported_globals:
        raise TemplateError(
            f"Globals.{', Globals.'.join(unsupported_globals)} is not supported by the local runtime (only Globals.Function)"
        )
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
    resources = {logical_id: _parse_resource(logical_id, spec) for logical_id, spec in raw["Resources"].items()}
    global_function = globals_section.get("Function") or {}
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
    )


def load_template(path: Path | str) -> Template:
    resolved = Path(path).resolve()
    return parse_template(cfn_yaml.load(resolved), resolved)
