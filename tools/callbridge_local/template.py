"""A typed, read-only view of the CloudFormation template a stack would get: the parts the local
runtime emulates.

A SAM template is first put through the SAM transform, by AWS's own translator (sam_transform.py):
Globals, the implicit resources (roles, permissions, the HTTP API's OpenAPI body, event-source
mappings, schedule rules) and SAM's `!Sub`/`!Ref`/`!GetAtt` handling are the translator's, not ours.
This module reads the result in CloudFormation terms: `AWS::Lambda::Function`, the
`AWS::ApiGatewayV2::Api` body's routes, `AWS::Lambda::EventSourceMapping`, `AWS::Events::Rule`...

The runtime supports what template.yaml's transform produces and refuses the rest by name: a resource
type it neither emulates nor knows to skip, a property of an emulated resource it would not honour.
Resources it skips (logs, alarms, networking, IAM...) are not looked into at all, so whatever they
contain cannot stop the runtime. Values that may hold intrinsics (environment variables, batch sizes,
schedule expressions, resource properties) are kept raw here; intrinsics.py resolves them once the
resources exist.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from callbridge_local import cfn_yaml

LAMBDA_FUNCTION = "AWS::Lambda::Function"
LAMBDA_LAYER = "AWS::Lambda::LayerVersion"
EVENT_SOURCE_MAPPING = "AWS::Lambda::EventSourceMapping"
HTTP_API = "AWS::ApiGatewayV2::Api"
HTTP_API_STAGE = "AWS::ApiGatewayV2::Stage"
EVENTS_RULE = "AWS::Events::Rule"
SCHEDULER_SCHEDULE = "AWS::Scheduler::Schedule"
IAM_ROLE = "AWS::IAM::Role"
DYNAMODB_TABLE = "AWS::DynamoDB::Table"
SQS_QUEUE = "AWS::SQS::Queue"
S3_BUCKET = "AWS::S3::Bucket"


@dataclass(frozen=True)
class Support:
    """What the runtime does with the properties of one resource type.

    ``read``: used locally; only these are resolved, so intrinsics elsewhere never matter.
    ``ignored``: accepted, without local effect. Any other property is refused.
    """

    read: frozenset[str]
    ignored: frozenset[str] = frozenset()


def _support(read: Collection[str], ignored: Collection[str] = ()) -> Support:
    return Support(frozenset(read), frozenset(ignored))


# Resource types the runtime emulates: created in moto, run in process, routed or driven.
EMULATED: Mapping[str, Support] = {
    # The ignored ones configure the deployed Lambda (runtime version, CPU, tracing, network,
    # reserved concurrency), which a handler running in this process cannot honour.
    LAMBDA_FUNCTION: _support(
        ("Handler", "Code", "Environment", "Timeout", "MemorySize", "Layers", "Role"),
        (
            "Runtime",
            "Architectures",
            "Description",
            "Tags",
            "TracingConfig",
            "VpcConfig",
            "ReservedConcurrentExecutions",
            "LoggingConfig",
            "EphemeralStorage",
        ),
    ),
    LAMBDA_LAYER: _support(
        ("Content",), ("Description", "LayerName", "CompatibleArchitectures", "CompatibleRuntimes", "LicenseInfo")
    ),
    HTTP_API: _support(("Body",), ("Description", "Tags", "FailOnWarnings")),
    # Throttling and access logs are API Gateway's, before any function runs: nothing to emulate.
    HTTP_API_STAGE: _support(
        ("ApiId", "StageName"), ("AutoDeploy", "Tags", "DefaultRouteSettings", "RouteSettings", "AccessLogSettings")
    ),
    EVENT_SOURCE_MAPPING: _support(
        (
            "EventSourceArn",
            "FunctionName",
            "BatchSize",
            "MaximumBatchingWindowInSeconds",
            "ScalingConfig",
            "FunctionResponseTypes",
            "Enabled",
        )
    ),
    EVENTS_RULE: _support(("ScheduleExpression", "State", "Targets"), ("Description", "Name")),
    # The flexible window only spreads runs on AWS; locally a schedule runs on its period.
    SCHEDULER_SCHEDULE: _support(
        ("ScheduleExpression", "State", "Target"),
        ("Description", "Name", "GroupName", "FlexibleTimeWindow", "ScheduleExpressionTimezone"),
    ),
    # Backups, encryption at rest and expiry have nothing to show locally (moto expires no items;
    # the code checks expires_at on read, as DynamoDB's TTL is late anyway).
    DYNAMODB_TABLE: _support(
        ("AttributeDefinitions", "KeySchema", "BillingMode", "GlobalSecondaryIndexes"),
        (
            "TimeToLiveSpecification",
            "PointInTimeRecoverySpecification",
            "SSESpecification",
            "DeletionProtectionEnabled",
        ),
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
    "AWS::S3::BucketPolicy": "bucket policies are not enforced",
    # Not created in moto, but enforced: iam.py reads each role from the transformed template and
    # checks every AWS call of its function against it (FunctionSpec.role names it).
    IAM_ROLE: "not created; iam.py checks each function's calls against its role",
    "AWS::Lambda::Permission": "the gateway, the rules and the mappings here call the handlers directly",
    "AWS::Lambda::EventInvokeConfig": "an asynchronous (scheduled) invocation runs once, without retries or destinations",
}
SKIPPED_PREFIXES: Mapping[str, str] = {"AWS::EC2::": "networking is not emulated"}

# Lambda's own defaults, used when the function does not set them.
LAMBDA_DEFAULT_TIMEOUT = 3
LAMBDA_DEFAULT_MEMORY = 128

# The OpenAPI of an HTTP API body that the gateway honours (methods, and what an operation may hold).
_HTTP_METHODS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "x-amazon-apigateway-any-method"}
)
# x-amazon-apigateway-cors: API Gateway's own CORS, which gateway.py answers (cors.py).
_BODY_KEYS = frozenset({"openapi", "info", "paths", "tags", "x-amazon-apigateway-cors"})
_OPERATION_KEYS = frozenset(
    {
        "x-amazon-apigateway-integration",
        "responses",
        "parameters",
        "summary",
        "description",
        "operationId",
        "tags",
        "isDefaultRoute",
    }
)
_INTEGRATION_KEYS = frozenset({"type", "httpMethod", "uri", "payloadFormatVersion", "timeoutInMillis"})
_FUNCTION_ARN_IN_SUB = re.compile(r"\$\{([A-Za-z0-9]+)\.Arn\}")
DEFAULT_ROUTE_PATH = "$default"


class TemplateError(ValueError):
    """The template is well-formed YAML but not a template this runtime can emulate."""


def skip_reason(resource_type: str) -> str | None:
    """Why the runtime skips resources of this type; None if it does not skip them."""
    if resource_type in SKIPPED:
        return SKIPPED[resource_type]
    return next((why for prefix, why in SKIPPED_PREFIXES.items() if resource_type.startswith(prefix)), None)


def check_properties(where: str, what: str, properties: Mapping[str, Any], support: Support) -> None:
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
class HttpRoute:
    """A route of an HTTP API body whose integration invokes the function."""

    # None for the API's catch-all $default route.
    path: str | None
    method: str
    # The AWS::ApiGatewayV2::Api's logical id.
    api: str


@dataclass(frozen=True)
class QueueMapping:
    """An AWS::Lambda::EventSourceMapping from one of the template's queues to the function."""

    name: str
    # The AWS::SQS::Queue's logical id.
    queue: str
    # Raw properties (BatchSize, MaximumBatchingWindowInSeconds...); drivers.SqsMapping resolved.
    properties: Mapping[str, Any]
    condition: str | None = None


@dataclass(frozen=True)
class ScheduleRule:
    """An AWS::Events::Rule or AWS::Scheduler::Schedule that invokes the function on a schedule."""

    name: str
    type: str
    # Raw ScheduleExpression and State (often a Ref to a parameter).
    expression: Any
    state: Any
    # The Scheduler target's Input (a JSON text), raw; None for an EventBridge rule.
    input: Any = None
    condition: str | None = None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_uri: str
    handler: str
    timeout: int
    memory_size: int
    # Environment.Variables, intrinsics unresolved.
    environment: Mapping[str, Any]
    # Logical ids of the AWS::Lambda::LayerVersion resources, in the function's order.
    layers: tuple[str, ...] = ()
    # The AWS::IAM::Role the function runs as (its Role is that role's Arn); None for a literal ARN.
    role: str | None = None
    http_events: tuple[HttpRoute, ...] = ()
    sqs_events: tuple[QueueMapping, ...] = ()
    schedule_events: tuple[ScheduleRule, ...] = ()
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
    # The CloudFormation template (after the SAM transform).
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

    def layer_python_dirs(self, function: FunctionSpec | None = None) -> list[Path]:
        """Directories Lambda would put on sys.path (/opt/python) for the function's layers, or for
        every layer of the template."""
        layer_ids = (
            function.layers if function is not None else [r.logical_id for r in self.resources_of_type(LAMBDA_LAYER)]
        )
        dirs: list[Path] = []
        for layer_id in layer_ids:
            content = self.resources[layer_id].properties.get("Content")
            folder = _local_code_path(content) if isinstance(content, dict) else None
            if folder is not None:
                candidate = (self.base_dir / folder / "python").resolve()
                if candidate.is_dir() and candidate not in dirs:
                    dirs.append(candidate)
        return dirs


def _local_code_path(code: Mapping[str, Any]) -> str | None:
    from callbridge_local.sam_transform import local_code_path

    return local_code_path(code)


def _as_int(value: Any, default: int, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool):
        raise TemplateError(f"{what} must be a number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise TemplateError(f"{what} must be a number, got {value!r}") from None


def _target(value: Any, resources: Mapping[str, Resource], kind: str, where: str) -> str:
    """The logical id of the resource of ``kind`` that ``value`` names by Ref or by its Arn."""
    target: Any = None
    if isinstance(value, dict) and len(value) == 1:
        if isinstance(value.get("Ref"), str):
            target = value["Ref"]
        getatt = value.get("Fn::GetAtt")
        if isinstance(getatt, list) and len(getatt) == 2 and getatt[1] == "Arn":
            target = getatt[0]
    if not isinstance(target, str) or target not in resources or resources[target].type != kind:
        raise TemplateError(f"{where} must name an {kind} of the template (Ref or Fn::GetAtt Arn), got {value!r}")
    return target


def _routes(api: Resource, resources: Mapping[str, Resource]) -> list[tuple[str, HttpRoute]]:
    """(function logical id, route) for every operation of the API's OpenAPI body."""
    where = f"resource {api.logical_id}"
    body = api.properties.get("Body")
    if not isinstance(body, dict):
        raise TemplateError(f"{where}: an HTTP API needs its OpenAPI Body (BodyS3Location is not supported)")
    extra = sorted(set(body) - _BODY_KEYS)
    if extra:
        raise TemplateError(
            f"{where}: Body {', '.join(extra)} is not supported by the local runtime "
            "(no authorizers or other API Gateway extensions; it honours paths, their Lambda integrations "
            "and x-amazon-apigateway-cors)"
        )
    routes: list[tuple[str, HttpRoute]] = []
    for path, item in (body.get("paths") or {}).items():
        for method, operation in (item or {}).items():
            if method == "parameters":
                continue
            at = f"{where}: Body.paths.{path}.{method}"
            if method not in _HTTP_METHODS or not isinstance(operation, dict):
                raise TemplateError(f"{at} is not an HTTP method the local runtime routes")
            unknown = sorted(set(operation) - _OPERATION_KEYS)
            if unknown:
                raise TemplateError(f"{at}: {', '.join(unknown)} is not supported by the local runtime")
            integration = operation.get("x-amazon-apigateway-integration") or {}
            unknown = sorted(set(integration) - _INTEGRATION_KEYS)
            if (
                unknown
                or integration.get("type") != "aws_proxy"
                or str(integration.get("payloadFormatVersion")) != "2.0"
            ):
                raise TemplateError(
                    f"{at}: only Lambda proxy integrations with payload format 2.0 are supported by the local runtime"
                )
            uri = integration.get("uri")
            text = uri.get("Fn::Sub") if isinstance(uri, dict) else None
            found = _FUNCTION_ARN_IN_SUB.findall(text) if isinstance(text, str) else []
            if len(found) != 1 or found[0] not in resources or resources[found[0]].type != LAMBDA_FUNCTION:
                raise TemplateError(f"{at}: the integration uri must name one function of the template, got {uri!r}")
            route_path = None if path == DEFAULT_ROUTE_PATH else str(path)
            route_method = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
            routes.append((found[0], HttpRoute(route_path, route_method, api.logical_id)))
    return routes


def _mapping(resource: Resource, resources: Mapping[str, Resource]) -> tuple[str, QueueMapping]:
    where = f"resource {resource.logical_id}"
    props = resource.properties
    function = _target(props.get("FunctionName"), resources, LAMBDA_FUNCTION, f"{where}: FunctionName")
    queue = _target(props.get("EventSourceArn"), resources, SQS_QUEUE, f"{where}: EventSourceArn")
    return function, QueueMapping(resource.logical_id, queue, dict(props), resource.condition)


def _schedules(resource: Resource, resources: Mapping[str, Resource]) -> list[tuple[str, ScheduleRule]]:
    where = f"resource {resource.logical_id}"
    props = resource.properties
    if props.get("ScheduleExpression") is None:
        raise TemplateError(f"{where}: only schedules are supported by the local runtime (no ScheduleExpression)")
    if resource.type == EVENTS_RULE:
        targets = props.get("Targets") or []
        for index, target in enumerate(targets):
            check_properties(f"{where}: Targets[{index}]", "rule target", target, _support(("Arn", "Id")))
        inputs = [None for _ in targets]
    else:
        target = props.get("Target") or {}
        check_properties(f"{where}: Target", "schedule target", target, _support(("Arn", "Input"), ("RoleArn",)))
        targets, inputs = [target], [target.get("Input")]
    found: list[tuple[str, ScheduleRule]] = []
    for index, target in enumerate(targets):
        function = _target(target.get("Arn"), resources, LAMBDA_FUNCTION, f"{where}: target Arn")
        rule = ScheduleRule(
            resource.logical_id,
            resource.type,
            props["ScheduleExpression"],
            props.get("State", "ENABLED"),
            inputs[index],
            resource.condition,
        )
        found.append((function, rule))
    return found


def _parse_function(resource: Resource, resources: Mapping[str, Resource]) -> FunctionSpec:
    logical_id, props = resource.logical_id, resource.properties
    code = props.get("Code")
    code_uri = _local_code_path(code) if isinstance(code, dict) else None
    if code_uri is None:
        raise TemplateError(
            f"{logical_id}.Code must be a local folder (a CodeUri the SAM transform named), got {code!r}; "
            "inline code and images are not supported by the local runtime"
        )
    handler = props.get("Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise TemplateError(f"{logical_id}.Handler must look like module.function, got {handler!r}")
    env_props = props.get("Environment") or {}
    variables = (env_props.get("Variables") or {}) if isinstance(env_props, dict) else {}
    if not isinstance(variables, dict):
        raise TemplateError(f"{logical_id}.Environment.Variables must be a mapping")
    layers = props.get("Layers") or []
    if not isinstance(layers, list):
        raise TemplateError(f"{logical_id}.Layers must be a list")
    role = props.get("Role")
    return FunctionSpec(
        logical_id=logical_id,
        code_uri=code_uri,
        handler=handler,
        timeout=_as_int(props.get("Timeout"), LAMBDA_DEFAULT_TIMEOUT, f"{logical_id}.Timeout"),
        memory_size=_as_int(props.get("MemorySize"), LAMBDA_DEFAULT_MEMORY, f"{logical_id}.MemorySize"),
        environment=dict(variables),
        layers=tuple(_target(layer, resources, LAMBDA_LAYER, f"{logical_id}.Layers") for layer in layers),
        role=None if isinstance(role, str) else _target(role, resources, IAM_ROLE, f"{logical_id}.Role"),
        condition=resource.condition,
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


def _sns_to_lambda(resource: Resource) -> bool:
    # Skipped resources are not read, but a subscription that would invoke a function is an event
    # source the runtime would silently not drive.
    protocol = resource.properties.get("Protocol")
    return isinstance(protocol, str) and protocol.lower() == "lambda"


def _parameters(raw: Mapping[str, Any]) -> dict[str, Parameter]:
    return {
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


def _is_sam(raw: Mapping[str, Any]) -> bool:
    transforms = raw.get("Transform")
    if transforms is not None:
        return True
    return any(
        isinstance(spec, dict) and str(spec.get("Type", "")).startswith("AWS::Serverless::")
        for spec in (raw.get("Resources") or {}).values()
    )


def sam_to_cloudformation(
    raw: Mapping[str, Any], path: Path, params: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The SAM transform, with the translator's complaints as one TemplateError; a template transformed
    before comes from the cache (transform_cache.py) without importing the translator."""
    from callbridge_local.transform_cache import cached_transform

    transforms = raw.get("Transform")
    for name in transforms if isinstance(transforms, list) else [transforms]:
        if name is not None and name != "AWS::Serverless-2016-10-31":
            raise TemplateError(
                f"Transform {name!r} is not supported by the local runtime (only AWS::Serverless-2016-10-31)"
            )
    return cached_transform(raw, params, lambda raw, params: _translate(raw, path, params))


def _translate(raw: Mapping[str, Any], path: Path, params: Mapping[str, str] | None) -> dict[str, Any]:
    # Imported here: the translator takes a second to import, and a CloudFormation template needs none.
    from samtranslator.model.exceptions import InvalidDocumentException, InvalidTemplateException

    from callbridge_local.sam_transform import transform

    try:
        return transform(raw, params)
    except InvalidDocumentException as exc:
        causes = "; ".join(str(cause.message) for cause in exc.causes) or str(exc)
        raise TemplateError(f"{path}: the SAM transform refused the template: {causes}") from exc
    except InvalidTemplateException as exc:
        raise TemplateError(f"{path}: the SAM transform refused the template: {exc.message}") from exc


def parse_template(raw: Any, path: Path, params: Mapping[str, str] | None = None) -> Template:
    """The runtime's view of a template: a SAM template is transformed first (with ``params``, the
    values the transform may need), a CloudFormation one is read as it is."""
    if not isinstance(raw, dict) or not isinstance(raw.get("Resources"), dict):
        raise TemplateError(f"{path} has no Resources section")
    if _is_sam(raw):
        raw = sam_to_cloudformation(raw, path, params)
    resources = {logical_id: _parse_resource(logical_id, spec) for logical_id, spec in raw["Resources"].items()}
    routes: dict[str, list[HttpRoute]] = {}
    mappings: dict[str, list[QueueMapping]] = {}
    schedules: dict[str, list[ScheduleRule]] = {}
    for resource in resources.values():
        if resource.type == HTTP_API:
            for function_id, route in _routes(resource, resources):
                routes.setdefault(function_id, []).append(route)
        elif resource.type == HTTP_API_STAGE and resource.properties.get("StageName") != "$default":
            raise TemplateError(
                f"resource {resource.logical_id}: only the $default stage is supported by the local runtime "
                f"(a named stage prefixes every path), got {resource.properties.get('StageName')!r}"
            )
        elif resource.type == EVENT_SOURCE_MAPPING:
            function_id, mapping = _mapping(resource, resources)
            mappings.setdefault(function_id, []).append(mapping)
        elif resource.type in (EVENTS_RULE, SCHEDULER_SCHEDULE):
            for function_id, rule in _schedules(resource, resources):
                schedules.setdefault(function_id, []).append(rule)
        elif resource.type == "AWS::SNS::Subscription" and _sns_to_lambda(resource):
            raise TemplateError(
                f"resource {resource.logical_id}: SNS delivery to a function is not emulated by the local runtime "
                "(it skips SNS, which only carries alarms)"
            )
    functions: dict[str, FunctionSpec] = {}
    for resource in resources.values():
        if resource.type == LAMBDA_FUNCTION:
            spec = _parse_function(resource, resources)
            functions[resource.logical_id] = replace(
                spec,
                http_events=tuple(routes.get(resource.logical_id, ())),
                sqs_events=tuple(mappings.get(resource.logical_id, ())),
                schedule_events=tuple(schedules.get(resource.logical_id, ())),
            )
    return Template(
        path=path,
        raw=raw,
        parameters=_parameters(raw),
        resources=resources,
        functions=functions,
        conditions=raw.get("Conditions") or {},
    )


def load_template(path: Path | str, params: Mapping[str, str] | None = None) -> Template:
    resolved = Path(path).resolve()
    return parse_template(cfn_yaml.load(resolved), resolved, params)
