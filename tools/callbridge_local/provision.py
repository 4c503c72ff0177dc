"""Creates a template's DynamoDB tables, SQS queues, S3 buckets and SSM parameters in a moto server,
then resolves every function's environment against what was created.

Physical names follow ``{stack}-{LogicalId}`` (lower case for buckets, which S3 requires) unless the
template names the resource itself. Provisioning is idempotent: what already exists is kept, so
several test modules can share one moto server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
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
    LAYER_TYPES,
    S3_BUCKET,
    SERVERLESS_FUNCTION,
    SQS_QUEUE,
    SSM_PARAMETER,
    FunctionSpec,
    Resource,
    Template,
)

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

log = logging.getLogger(__name__)

HTTP_API_TYPES = ("AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api")
# The API SAM creates for HttpApi events that name no ApiId.
IMPLICIT_HTTP_API = "ServerlessHttpApi"

# CloudFormation property -> SQS attribute; everything else on a queue is ignored locally.
_SQS_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "RedrivePolicy",
    "RedriveAllowPolicy",
)
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

    def physical_name(self, logical_id: str) -> str:
        return str(self.resolver.resources[logical_id].ref)

    def queue_for_arn(self, arn: str) -> PhysicalResource:
        for logical_id, resource in self.resolver.resources.items():
            if self.template.resources[logical_id].type == SQS_QUEUE and resource.attributes.get("Arn") == arn:
                return resource
        raise ProvisionError(f"queue {arn} is not a queue of the template")

    def http_api_id(self, api_ref: Any | None) -> str:
        """The API id of an HttpApi event's ApiId (None: SAM's implicit API)."""
        if api_ref is None:
            return api_id_for(self.stack_name, IMPLICIT_HTTP_API)
        return str(self.resolver.resolve(api_ref))


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
        if len(value) == 1 and "Ref" in value and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        elif len(value) == 1 and "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            first = target.split(".", 1)[0] if isinstance(target, str) else target[0]
            if isinstance(first, str):
                found.add(first)
        elif len(value) == 1 and "Fn::Sub" in value:
            arg = value["Fn::Sub"]
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            for name in _SUB_NAMES.findall(str(text)):
                if name not in variables:
                    found.add(name.split(".", 1)[0] if not name.startswith("AWS::") else name)
            found |= references(variables)
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
        for dep in sorted(references(dict(resource.properties)) & set(by_id)):
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


def _tags(raw: Any) -> list[Any]:
    if isinstance(raw, dict):
        return [{"Key": str(k), "Value": str(v)} for k, v in raw.items()]
    if isinstance(raw, list):
        return [{"Key": str(t["Key"]), "Value": str(t["Value"])} for t in raw if isinstance(t, dict)]
    return []


def _encryption_rules(bucket_encryption: Mapping[str, Any]) -> list[Any]:
    # CloudFormation says ServerSideEncryptionByDefault where the S3 API says ApplyServerSide...
    return [
        {("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v for k, v in r.items()}
        for r in bucket_encryption["ServerSideEncryptionConfiguration"]
    ]


def _ignore_unknown(logical_id: str, props: Mapping[str, Any], handled: Iterable[str]) -> None:
    ignored = sorted(set(props) - set(handled))
    if ignored:
        log.debug("%s: properties not emulated locally: %s", logical_id, ", ".join(ignored))


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
            SSM_PARAMETER: self._create_parameter,
        }
        concrete = [r for r in self.template.resources.values() if r.type in creators and self._included(r)]
        for resource in _creation_order(concrete):
            props = self.resolver.resolve(dict(resource.properties))
            try:
                physical = creators[resource.type](resource.logical_id, props)
            except Exception as exc:
                raise ProvisionError(f"could not create {resource.logical_id} ({resource.type}): {exc}") from exc
            self.resolver.register(resource.logical_id, physical)
            log.debug("created %s %s", resource.type, physical.ref)

    def _register_virtual_resources(self) -> None:
        """Resources that are not emulated as such but whose Ref/GetAtt a template may use."""
        implicit_api = any(e.api_id is None for f in self.template.functions.values() for e in f.http_events)
        if implicit_api:
            api_id = api_id_for(self._stack, IMPLICIT_HTTP_API)
            self.resolver.register(IMPLICIT_HTTP_API, self._api_resource(api_id))
        for resource in self.template.resources.values():
            if not self._included(resource):
                continue
            logical_id, kind = resource.logical_id, resource.type
            if kind == SERVERLESS_FUNCTION:
                name = resource.properties.get("FunctionName")
                name = name if isinstance(name, str) else f"{self._stack}-{logical_id}"
                arn = self._arn("lambda", f"function:{name}")
                self.resolver.register(logical_id, PhysicalResource(name, {"Arn": arn}))
            elif kind in HTTP_API_TYPES:
                self.resolver.register(logical_id, self._api_resource(api_id_for(self._stack, logical_id)))
            elif kind in LAYER_TYPES:
                arn = self._arn("lambda", f"layer:{self._stack}-{logical_id}:1")
                self.resolver.register(logical_id, PhysicalResource(arn, {"Arn": arn}))
            elif kind not in (DYNAMODB_TABLE, SQS_QUEUE, S3_BUCKET, SSM_PARAMETER):
                log.debug("%s (%s) is not emulated locally", logical_id, kind)
                self.resolver.register(logical_id, PhysicalResource(f"{self._stack}-{logical_id}"))

    def _api_resource(self, api_id: str) -> PhysicalResource:
        endpoint = f"https://{api_id}.execute-api.{self.resolver.region}.amazonaws.com"
        return PhysicalResource(api_id, {"ApiId": api_id, "ApiEndpoint": endpoint})

    # -- DynamoDB ------------------------------------------------------------------------------

    def _create_table(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        client: DynamoDBClient = self._client("dynamodb")
        name = str(props.get("TableName") or f"{self._stack}-{logical_id}")
        billing = str(props.get("BillingMode", "PROVISIONED"))
        default_throughput = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": billing,
        }
        if billing == "PROVISIONED":
            kwargs["ProvisionedThroughput"] = props.get("ProvisionedThroughput") or default_throughput
        if props.get("GlobalSecondaryIndexes"):
            indexes = []
            for index in props["GlobalSecondaryIndexes"]:
                spec = {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
                if billing == "PROVISIONED":
                    spec["ProvisionedThroughput"] = index.get("ProvisionedThroughput") or default_throughput
                indexes.append(spec)
            kwargs["GlobalSecondaryIndexes"] = indexes
        if props.get("LocalSecondaryIndexes"):
            kwargs["LocalSecondaryIndexes"] = [
                {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
                for index in props["LocalSecondaryIndexes"]
            ]
        stream = props.get("StreamSpecification")
        if isinstance(stream, dict) and stream.get("StreamViewType"):
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        sse = props.get("SSESpecification")
        if isinstance(sse, dict) and str(sse.get("SSEEnabled", "")).lower() == "true":
            api_sse: dict[str, Any] = {"Enabled": True}
            for cfn_key, api_key in (("SSEType", "SSEType"), ("KMSMasterKeyId", "KMSMasterKeyId")):
                if sse.get(cfn_key):
                    api_sse[api_key] = sse[cfn_key]
            kwargs["SSESpecification"] = api_sse
        for key in ("TableClass", "DeletionProtectionEnabled"):
            if key in props:
                kwargs[key] = props[key]
        if props.get("Tags"):
            kwargs["Tags"] = _tags(props["Tags"])
        _ignore_unknown(
            logical_id,
            props,
            [*kwargs, "ProvisionedThroughput", "TimeToLiveSpecification", "PointInTimeRecoverySpecification"],
        )
        try:
            client.create_table(**kwargs)
        except Exception as exc:
            if _error_code(exc) != "ResourceInUseException":
                raise
            log.debug("table %s already exists", name)
        ttl = props.get("TimeToLiveSpecification")
        if isinstance(ttl, dict) and str(ttl.get("Enabled", "")).lower() == "true":
            current = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") != "ENABLED":
                client.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": str(ttl["AttributeName"]), "Enabled": True},
                )
        pitr = props.get("PointInTimeRecoverySpecification")
        if isinstance(pitr, dict) and str(pitr.get("PointInTimeRecoveryEnabled", "")).lower() == "true":
            client.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        description = client.describe_table(TableName=name)["Table"]
        attributes: dict[str, Any] = {"Arn": description.get("TableArn", self._arn("dynamodb", f"table/{name}"))}
        if description.get("LatestStreamArn"):
            attributes["StreamArn"] = description["LatestStreamArn"]
        return PhysicalResource(name, attributes)

    # -- SQS -----------------------------------------------------------------------------------

    def _create_queue(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        client: SQSClient = self._client("sqs")
        fifo = str(props.get("FifoQueue", "")).lower() == "true"
        name = str(props.get("QueueName") or f"{self._stack}-{logical_id}")
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attributes: dict[Any, str] = {}
        for key in _SQS_ATTRIBUTES:
            if key not in props:
                continue
            value = props[key]
            attributes[key] = json.dumps(value) if isinstance(value, (dict, list)) else as_env_value(value)
        _ignore_unknown(logical_id, props, [*_SQS_ATTRIBUTES, "QueueName", "Tags"])
        kwargs: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
        if props.get("Tags"):
            kwargs["tags"] = {t["Key"]: t["Value"] for t in _tags(props["Tags"])}
        try:
            url = client.create_queue(**kwargs)["QueueUrl"]
        except Exception as exc:
            if _error_code(exc) not in ("QueueAlreadyExists", "QueueNameExists"):
                raise
            url = client.get_queue_url(QueueName=name)["QueueUrl"]
            client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return PhysicalResource(url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    # -- S3 ------------------------------------------------------------------------------------

    def _create_bucket(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        client: S3Client = self._client("s3")
        name = str(props.get("BucketName") or f"{self._stack}-{logical_id}".lower())
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
        optional: list[tuple[str, Callable[[Any], Any]]] = [
            (
                "PublicAccessBlockConfiguration",
                lambda v: client.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=v),
            ),
            (
                "BucketEncryption",
                lambda v: client.put_bucket_encryption(
                    Bucket=name,
                    ServerSideEncryptionConfiguration={"Rules": _encryption_rules(v)},
                ),
            ),
            (
                "VersioningConfiguration",
                lambda v: client.put_bucket_versioning(Bucket=name, VersioningConfiguration=v),
            ),
            ("Tags", lambda v: client.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(v)})),
        ]
        for key, apply in optional:
            if key in props:
                try:
                    apply(props[key])
                except Exception as exc:
                    # Bucket settings only matter on AWS; a bucket without them still works locally.
                    log.warning("%s: %s not applied locally: %s", logical_id, key, exc)
        _ignore_unknown(logical_id, props, ["BucketName", *(key for key, _ in optional)])
        region = self.resolver.region
        return PhysicalResource(
            name,
            {
                "Arn": f"arn:aws:s3:::{name}",
                "DomainName": f"{name}.s3.amazonaws.com",
                "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
                "DualStackDomainName": f"{name}.s3.dualstack.{region}.amazonaws.com",
                "WebsiteURL": f"http://{name}.s3-website-{region}.amazonaws.com",
            },
        )

    # -- SSM -----------------------------------------------------------------------------------

    def _create_parameter(self, logical_id: str, props: dict[str, Any]) -> PhysicalResource:
        client: SSMClient = self._client("ssm")
        name = str(props.get("Name") or f"{self._stack}-{logical_id}")
        kind = str(props.get("Type", "String"))
        value = props.get("Value")
        if value is None or value is NO_VALUE:
            raise ProvisionError(f"{logical_id}: SSM parameter has no Value")
        text = ",".join(str(v) for v in value) if isinstance(value, list) else as_env_value(value)
        kwargs: dict[str, Any] = {"Name": name, "Value": text, "Type": kind, "Overwrite": True}
        for key in ("Description", "AllowedPattern", "Tier", "DataType"):
            if props.get(key):
                kwargs[key] = str(props[key])
        _ignore_unknown(logical_id, props, [*kwargs, "Tags"])
        client.put_parameter(**kwargs)
        if props.get("Tags"):
            client.add_tags_to_resource(ResourceType="Parameter", ResourceId=name, Tags=_tags(props["Tags"]))
        return PhysicalResource(name, {"Type": kind, "Value": text})


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
