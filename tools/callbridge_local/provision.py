"""Creates a template's DynamoDB tables, SQS queues and S3 buckets in a moto server, then resolves
every function's environment against what was created.

Physical names are ``{stack}-{LogicalId}`` (lower case for buckets, which S3 requires). Only the
properties template.py lists as read are applied (and resolved). Provisioning is idempotent: what
already exists is kept, so several test modules can share one moto server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from callbridge_local import DEFAULT_ACCOUNT_ID, DEFAULT_REGION, DEFAULT_STACK_NAME
from callbridge_local.intrinsics import (
    NO_VALUE,
    IntrinsicError,
    PhysicalResource,
    Resolver,
    as_env_value,
    parameter_values,
)
from callbridge_local.template import (
    DYNAMODB_TABLE,
    EVENTS_RULE,
    HTTP_API,
    IAM_ROLE,
    LAMBDA_FUNCTION,
    LAMBDA_LAYER,
    S3_BUCKET,
    SCHEDULER_SCHEDULE,
    SQS_QUEUE,
    FunctionSpec,
    Resource,
    Template,
)

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

_SUB_NAMES = re.compile(r"\$\{([^!}][^}]*)\}")


class ProvisionError(RuntimeError):
    """A resource could not be created, or the template's environment cannot be resolved."""


class EnvironmentConflictError(ProvisionError):
    """Two functions set one environment variable to different values.

    Locally all functions share one process and therefore one os.environ.
    """


@dataclass(frozen=True)
class AwsTarget:
    """Where and as whom the provisioner talks to the emulated AWS."""

    endpoint_url: str
    region: str = DEFAULT_REGION
    access_key_id: str = "testing"
    secret_access_key: str = "testing"

    def session(self) -> boto3.Session:
        import boto3

        return boto3.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )

    def client(self, service: str) -> Any:
        return self.session().client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]


@dataclass
class ProvisionedStack:
    template: Template
    target: AwsTarget
    resolver: Resolver
    # Per function logical id, its resolved environment (functions whose Condition is false omitted).
    function_env: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def stack_name(self) -> str:
        return self.resolver.stack_name

    @property
    def resources(self) -> Mapping[str, PhysicalResource]:
        return self.resolver.resources

    @property
    def environment(self) -> dict[str, str]:
        """All functions' variables in one dict, as the shared local process sees them."""
        return merge_environments(self.function_env)

    @property
    def functions(self) -> list[FunctionSpec]:
        return [f for f in self.template.functions.values() if f.logical_id in self.function_env]

    def created(self, logical_id: str) -> bool:
        """Whether the resource exists in this stack (its Condition, if any, holds)."""
        resource = self.template.resources[logical_id]
        return resource.condition is None or self.resolver.condition(resource.condition)

    def resolve(self, logical_id: str, value: Any) -> Any:
        """``value``, read from resource ``logical_id``, with its intrinsics resolved."""
        try:
            return self.resolver.resolve(value)
        except IntrinsicError as exc:
            raise ProvisionError(f"{logical_id}: {exc}") from exc

    def physical_name(self, logical_id: str) -> str:
        return str(self.resolver.resources[logical_id].ref)

    def api_id(self, logical_id: str) -> str:
        """The id of the template's AWS::ApiGatewayV2::Api ``logical_id``."""
        return str(self.resolver.ref(logical_id))

    def role_arn(self, function: FunctionSpec) -> str | None:
        """The ARN of the AWS::IAM::Role the function runs as (None for a role outside the template)."""
        if function.role is None:
            return None
        return str(self.resolver.get_att(function.role, "Arn"))


def api_id_for(stack_name: str, logical_id: str) -> str:
    # API Gateway ids are 10 lower-case alphanumerics; a stable one keeps URLs and logs reproducible.
    digest = hashlib.sha256(f"{stack_name}/{logical_id}".encode()).digest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % len(alphabet)] for b in digest[:10])


def merge_environments(per_function: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for function_id, env in per_function.items():
        for name, value in env.items():
            if name in merged and merged[name] != value:
                raise EnvironmentConflictError(
                    f"environment variable {name} is {merged[name]!r} in {owner[name]} but {value!r} in "
                    f"{function_id}; locally all functions share one process, so they must agree"
                )
            merged[name] = value
            owner.setdefault(name, function_id)
    return merged


def references(value: Any) -> set[str]:
    """Logical ids and parameter names a value refers to through Ref, Fn::GetAtt or Fn::Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("Ref"), str):
            found.add(value["Ref"])
        elif len(value) == 1 and isinstance(value.get("Fn::GetAtt"), list) and value["Fn::GetAtt"]:
            found.add(str(value["Fn::GetAtt"][0]))
        elif len(value) == 1 and isinstance(value.get("Fn::Sub"), str):
            for name in _SUB_NAMES.findall(value["Fn::Sub"]):
                found.add(name if name.startswith("AWS::") else name.split(".", 1)[0])
        else:
            for item in value.values():
                found |= references(item)
    return found


def _creation_order(resources: list[Resource]) -> list[Resource]:
    """Dependencies first (a queue's dead-letter queue before the queue), else template order."""
    by_id = {r.logical_id: r for r in resources}
    order: list[Resource] = []
    state: dict[str, str] = {}

    def visit(resource: Resource, path: tuple[str, ...]) -> None:
        if state.get(resource.logical_id) == "done":
            return
        if state.get(resource.logical_id) == "visiting":
            raise ProvisionError(f"circular dependency: {' -> '.join((*path, resource.logical_id))}")
        state[resource.logical_id] = "visiting"
        for dep in sorted(references(resource.read_properties()) & set(by_id)):
            visit(by_id[dep], (*path, resource.logical_id))
        state[resource.logical_id] = "done"
        order.append(resource)

    for resource in resources:
        visit(resource, ())
    return order


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


class Provisioner:
    def __init__(self, template: Template, target: AwsTarget, resolver: Resolver) -> None:
        self.template = template
        self.target = target
        self.resolver = resolver
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.target.client(service)
        return self._clients[service]

    @property
    def _stack(self) -> str:
        return self.resolver.stack_name

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.resolver.region}:{self.resolver.account_id}:{resource}"

    def _included(self, resource: Resource) -> bool:
        return resource.condition is None or self.resolver.condition(resource.condition)

    def run(self) -> None:
        self._register_virtual_resources()
        creators: dict[str, Callable[[str, dict[str, Any]], PhysicalResource]] = {
            DYNAMODB_TABLE: self._create_table,
            SQS_QUEUE: self._create_queue,
            S3_BUCKET: self._create_bucket,
        }
        concrete = [r for r in self.template.resources.values() if r.type in creators and self._included(r)]
        for resource in _creation_order(concrete):
            where = f"{resource.logical_id} ({resource.type})"
            try:
                props = self.resolver.resolve(resource.read_properties())
            except IntrinsicError as exc:
                raise ProvisionError(f"{where}: {exc}") from exc
            try:
                physical = creators[resource.type](resource.logical_id, props)
            except ProvisionError:
                raise
            except Exception as exc:
                raise ProvisionError(f"could not create {where}: {exc}") from exc
            self.resolver.register(resource.logical_id, physical)
            log.debug("created %s %s", resource.type, physical.ref)

    def _register_virtual_resources(self) -> None:
        """Resources that are not created in moto but whose Ref/GetAtt the runtime uses."""
        for resource in self.template.resources.values():
            if not self._included(resource):
                continue
            logical_id, name = resource.logical_id, f"{self._stack}-{resource.logical_id}"
            physical: PhysicalResource | None = None
            if resource.type == LAMBDA_FUNCTION:
                physical = PhysicalResource(name, {"Arn": self._arn("lambda", f"function:{name}")})
            elif resource.type == HTTP_API:
                api_id = api_id_for(self._stack, logical_id)
                endpoint = f"https://{api_id}.execute-api.{self.resolver.region}.amazonaws.com"
                physical = PhysicalResource(api_id, {"ApiEndpoint": endpoint, "ApiId": api_id})
            elif resource.type == LAMBDA_LAYER:
                arn = self._arn("lambda", f"layer:{name}:1")
                physical = PhysicalResource(arn, {"Arn": arn})
            elif resource.type == IAM_ROLE:
                arn = f"arn:aws:iam::{self.resolver.account_id}:role/{name}"
                physical = PhysicalResource(name, {"Arn": arn, "RoleId": api_id_for(self._stack, logical_id).upper()})
            elif resource.type == EVENTS_RULE:
                physical = PhysicalResource(name, {"Arn": self._arn("events", f"rule/{name}")})
            elif resource.type == SCHEDULER_SCHEDULE:
                physical = PhysicalResource(name, {"Arn": self._arn("scheduler", f"schedule/default/{name}")})
            if physical is not None:
                self.resolver.register(logical_id, physical)

    # -- DynamoDB ------------------------------------------------------------------------------

    def _create_table(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        client: DynamoDBClient = self._client("dynamodb")
        name = f"{self._stack}-{logical_id}"
        billing = props.get("BillingMode")
        if billing != "PAY_PER_REQUEST":
            raise ProvisionError(
                f"{logical_id}: BillingMode {billing!r} is not supported by the local runtime (only PAY_PER_REQUEST)"
            )
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": billing,
        }
        if props.get("GlobalSecondaryIndexes"):
            kwargs["GlobalSecondaryIndexes"] = [
                {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
                for index in props["GlobalSecondaryIndexes"]
            ]
        try:
            client.create_table(**kwargs)
        except Exception as exc:
            if _error_code(exc) != "ResourceInUseException":
                raise
            log.debug("table %s already exists", name)
        return PhysicalResource(name)

    # -- SQS -----------------------------------------------------------------------------------

    def _create_queue(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        client: SQSClient = self._client("sqs")
        name = f"{self._stack}-{logical_id}"
        # The properties read are all queue attributes of the same name; RedrivePolicy is JSON there.
        attributes: dict[Any, str] = {
            key: json.dumps(value) if isinstance(value, (dict, list)) else as_env_value(value)
            for key, value in props.items()
        }
        try:
            url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        except Exception as exc:
            if _error_code(exc) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = client.get_queue_url(QueueName=name)["QueueUrl"]
            client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return PhysicalResource(url, {"Arn": arn, "QueueName": name})

    # -- S3 ------------------------------------------------------------------------------------

    def _create_bucket(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        client: S3Client = self._client("s3")
        name = f"{self._stack}-{logical_id}".lower()
        try:
            if self.resolver.region == "us-east-1":
                client.create_bucket(Bucket=name)
            else:
                client.create_bucket(
                    Bucket=name,
                    CreateBucketConfiguration={"LocationConstraint": self.resolver.region},  # type: ignore[typeddict-item]
                )
        except Exception as exc:
            if _error_code(exc) != "BucketAlreadyOwnedByYou":
                raise
        return PhysicalResource(name, {"Arn": f"arn:aws:s3:::{name}"})


AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"


def resolve_function_env(stack: ProvisionedStack) -> None:
    resolver = stack.resolver
    for function in stack.template.functions.values():
        if function.condition is not None and not resolver.condition(function.condition):
            continue
        env: dict[str, str] = {}
        for name, raw in function.environment.items():
            try:
                value = resolver.resolve(raw)
            except IntrinsicError as exc:
                raise ProvisionError(f"{function.logical_id}: environment variable {name}: {exc}") from exc
            if value is not NO_VALUE:
                env[str(name)] = as_env_value(value)
        if AWS_ENDPOINT_URL in env:
            # Empty on AWS (botocore then uses the real endpoints); here the functions' AWS is the
            # emulator, and this is the value `sam local --env-vars` hands them (samlocal.py).
            env[AWS_ENDPOINT_URL] = stack.target.endpoint_url
        stack.function_env[function.logical_id] = env


def provision(
    template: Template,
    target: AwsTarget,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    params: Mapping[str, str] | None = None,
    account_id: str = DEFAULT_ACCOUNT_ID,
) -> ProvisionedStack:
    """Create the template's resources in the emulator at ``target`` and resolve function envs."""
    resolver = Resolver(
        template,
        parameter_values(template, params),
        stack_name=stack_name,
        region=target.region,
        account_id=account_id,
    )
    Provisioner(template, target, resolver).run()
    stack = ProvisionedStack(template=template, target=target, resolver=resolver)
    resolve_function_env(stack)
    # Fail now rather than when the first request arrives.
    merge_environments(stack.function_env)
    return stack
