"""IAM as AWS enforces it: every AWS call a function makes is checked against its role's policies.

On AWS a function runs as its execution role, and a call the role's policies do not allow fails
with AccessDenied(Exception). Locally all functions share one process and moto answers everyone,
so without this a missing permission is found only after a deploy. Here:

- each function's role is read from the CloudFormation the SAM transform produces
  (`sam_transform.py`): `Role: !GetAtt <Role>.Arn`, the role's inline `Policies` (policy templates
  already expanded by the translator), its `ManagedPolicyArns` (the AWS managed policies SAM adds:
  AWSLambdaBasicExecutionRole, AWSXrayWriteOnlyAccess, AWSLambdaVPCAccessExecutionRole,
  AWSLambdaSQSQueueExecutionRole; their documents are the copy of AWS's that moto ships) and any
  `AWS::IAM::Policy` naming the role, with intrinsics resolved against the stack's physical names;
- every botocore call made while a function runs (a context variable set around each invocation,
  carried into the thread pools a handler starts) or through a client bound to a function (the
  SQS event source's poller, which polls as the function's role on AWS) is mapped to the IAM
  action(s) and resource ARN(s) the Service Authorization Reference defines (`iam_actions.py`)
  and evaluated with moto's policy evaluator (`moto.iam.access_control.IAMPolicyStatement`:
  Action/NotAction/Resource with `*` wildcards). An explicit Deny in any policy wins, then any
  Allow, else the call is implicitly denied, as for identity-based policies in one account;
- a denied call raises botocore's ClientError in the handler with AWS's code and message
  ("User: arn:aws:sts::…:assumed-role/<role>/<function> is not authorized to perform: <action> on
  resource: <arn> because no identity-based policy allows the <action> action") and is logged
  naming the function and the action;
- every (statement, action pattern, resource pattern) that allowed a call is recorded, so the
  statements, actions and resources no call ever needed can be listed (`report()`,
  `GET /_local/iam`, and a JSON file per runtime in `$CALLBRIDGE_IAM_REPORT_DIR` at stop;
  `python -m callbridge_local.iam DIR` merges the files of a test run).

moto's evaluator does not handle conditions, NotResource, principals or the `?` wildcard the way
IAM does, so a statement that uses one is refused at start with a line naming it, as the runtime
refuses whatever else it would not honour. Calls the runtime makes itself (provisioning, applying
account files) are made as the stack's deployer, not as a function, and are not checked.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import json
import logging
import os
import re
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from botocore.client import BaseClient
from botocore.exceptions import ClientError
from moto.iam.access_control import IAMPolicyStatement, PermissionResult

from callbridge_local.iam_actions import PARTITION, CallSite, Request, requests_for

log = logging.getLogger(__name__)

LAMBDA_FUNCTION: Final = "AWS::Lambda::Function"
IAM_ROLE: Final = "AWS::IAM::Role"
IAM_POLICY: Final = "AWS::IAM::Policy"
IAM_MANAGED_POLICY: Final = "AWS::IAM::ManagedPolicy"
AWS_MANAGED_POLICY_PREFIX: Final = f"arn:{PARTITION}:iam::aws:policy/"
REPORT_DIR_ENV: Final = "CALLBRIDGE_IAM_REPORT_DIR"

# Statement elements moto's evaluator reads as IAM does; anything else is refused at start.
_SUPPORTED_ELEMENTS: Final = frozenset({"Sid", "Effect", "Action", "NotAction", "Resource"})


class PolicyError(ValueError):
    """A role or policy of the template cannot be evaluated locally."""


class StackValues(Protocol):
    """What resolving a policy needs from the provisioned stack (intrinsics.Resolver has it)."""

    region: str
    account_id: str
    stack_name: str

    def ref(self, name: str) -> Any: ...

    def get_att(self, logical_id: str, attribute: str) -> Any: ...

    def condition(self, name: str) -> bool: ...

    def resolve(self, value: Any) -> Any: ...


# -- resolving the transformed template's policies ----------------------------------------------

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class _NoValue:
    pass


_NO_VALUE: Final = _NoValue()


class PolicyValues:
    """Resolves the intrinsics the transform leaves in IAM policies: `Fn::Sub` in both forms (the
    policy templates use the list form), the pseudo parameters `AWS::Partition` and
    `AWS::AccountId`, `Fn::GetAtt <Table>.Arn`; the rest is the stack's own resolver's."""

    def __init__(self, stack: StackValues, resources: Mapping[str, Any]) -> None:
        self.stack = stack
        self.resources = resources  # the transformed template's Resources, for resource types

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            key, arg = next(iter(value.items()))
            if key == "Ref":
                return self._ref(str(arg))
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::GetAtt":
                return self._get_att(*_get_att_args(arg))
            if key == "Fn::If":
                condition, then, otherwise = arg
                return self.resolve(then if self.stack.condition(condition) else otherwise)
            if isinstance(key, str) and key.startswith("Fn::"):
                return self.stack.resolve({key: self.resolve(arg)})
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name == "AWS::Partition":
            return PARTITION
        if name == "AWS::AccountId":
            return self.stack.account_id
        return self.stack.ref(name)

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        kind = (self.resources.get(logical_id) or {}).get("Type")
        if attribute == "Arn" and kind == "AWS::DynamoDB::Table":
            site = CallSite(self.stack.region, self.stack.account_id)
            return site.arn("dynamodb", f"table/{self.stack.ref(logical_id)}")
        return self.stack.get_att(logical_id, attribute)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def substitute(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                value = self.resolve(variables[expression])
            elif "." in expression and not expression.startswith("AWS::"):
                value = self._get_att(*expression.split(".", 1))
            else:
                value = self._ref(expression)
            return str(value)

        return _SUB_VARIABLE.sub(substitute, str(text))


def _get_att_args(arg: Any) -> tuple[str, str]:
    if isinstance(arg, str):
        logical_id, _, attribute = arg.partition(".")
        return logical_id, attribute
    return str(arg[0]), str(arg[1])


@functools.cache
def _aws_managed_policies() -> dict[str, Any]:
    # AWS's managed policy documents as moto ships them (moto/iam/aws_managed_policies.py, imported
    # from AWS): the same text `aws iam get-policy-version` answers, kept up to date by moto.
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    by_arn: dict[str, Any] = {}
    for name, policy in json.loads(aws_managed_policies_data).items():
        by_arn[f"{AWS_MANAGED_POLICY_PREFIX}{policy['Path'].lstrip('/')}{name}"] = policy["Document"]
    return by_arn


# -- policies and their evaluation --------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Statement:
    """One statement of one policy of a function's role."""

    function: str
    policy: str
    index: int
    document: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.function}/{self.policy}#{self.index}"

    @property
    def effect(self) -> str:
        return str(self.document["Effect"])

    @property
    def actions(self) -> list[str]:
        return [str(a) for a in _as_list(self.document.get("Action", self.document.get("NotAction", [])))]

    @property
    def resources(self) -> list[str]:
        return [str(r) for r in _as_list(self.document["Resource"])]

    @functools.cached_property
    def _evaluator(self) -> IAMPolicyStatement:
        return _evaluator(self.document)

    def evaluate(self, request: Request) -> PermissionResult:
        return self._evaluator.is_action_permitted(request.action.lower(), request.resource)

    def matching(self, request: Request) -> list[tuple[str, str]]:
        """The (action pattern, resource pattern) pairs of this statement that match ``request``."""
        if "NotAction" in self.document:
            actions = ["NotAction"]
        else:
            actions = [a for a in self.actions if _permits(_evaluator_for(a, "*"), request.action, "*")]
        resources = [r for r in self.resources if _permits(_evaluator_for("*", r), "any:action", request.resource)]
        return [(a, r) for a in actions for r in resources]

    def describe(self) -> dict[str, Any]:
        described = {"function": self.function, "policy": self.policy, "statement": self.index}
        return {**described, **{k: v for k, v in self.document.items() if k in _SUPPORTED_ELEMENTS}}


def _lower_actions(document: Mapping[str, Any]) -> dict[str, Any]:
    # Action names are case-insensitive in IAM; moto's matcher is not. Resources stay as they are.
    lowered = dict(document)
    for element in ("Action", "NotAction"):
        if element in lowered:
            lowered[element] = [str(a).lower() for a in _as_list(lowered[element])]
    return lowered


def _evaluator(document: Mapping[str, Any]) -> IAMPolicyStatement:
    return IAMPolicyStatement(_lower_actions(document))


def _permits(evaluator: IAMPolicyStatement, action: str, resource: str) -> bool:
    return evaluator.is_action_permitted(action.lower(), resource) == PermissionResult.PERMITTED


@functools.lru_cache(maxsize=4096)
def _evaluator_for(action: str, resource: str) -> IAMPolicyStatement:
    return IAMPolicyStatement({"Effect": "Allow", "Action": action.lower(), "Resource": resource})


def check_statement(where: str, statement: Any) -> None:
    """Refuse what moto's evaluator would not read as IAM does."""
    if not isinstance(statement, dict):
        raise PolicyError(f"{where}: a statement must be an object, got {statement!r}")
    unsupported = sorted(set(statement) - _SUPPORTED_ELEMENTS)
    if unsupported:
        raise PolicyError(
            f"{where}: {', '.join(unsupported)} is not evaluated by the local runtime "
            f"(supported: {', '.join(sorted(_SUPPORTED_ELEMENTS))})"
        )
    if statement.get("Effect") not in ("Allow", "Deny"):
        raise PolicyError(f"{where}: Effect must be Allow or Deny, got {statement.get('Effect')!r}")
    if ("Action" in statement) == ("NotAction" in statement):
        raise PolicyError(f"{where}: a statement needs exactly one of Action and NotAction")
    if "Resource" not in statement:
        raise PolicyError(f"{where}: a statement of an identity-based policy needs a Resource")
    for element in ("Action", "NotAction", "Resource"):
        for pattern in _as_list(statement.get(element, [])):
            if not isinstance(pattern, str):
                raise PolicyError(f"{where}: {element} {pattern!r} is not a string after resolution")
            if "?" in pattern or "${" in pattern:
                raise PolicyError(f"{where}: {element} {pattern!r}: '?' and policy variables are not evaluated locally")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # The Allow statements that matched (all of them: each is exercised), or the Deny that won.
    statements: tuple[Statement, ...]
    explicit_deny: bool = False


@dataclass
class FunctionRole:
    """A function's identity on AWS and the statements of every policy of its role."""

    function: str  # logical id
    function_name: str  # physical name
    role: str  # logical id of the role
    role_name: str
    statements: list[Statement]

    def principal(self, account_id: str) -> str:
        return f"arn:{PARTITION}:sts::{account_id}:assumed-role/{self.role_name}/{self.function_name}"

    def evaluate(self, request: Request) -> Decision:
        allowed: list[Statement] = []
        for statement in self.statements:
            result = statement.evaluate(request)
            if result == PermissionResult.DENIED:
                return Decision(False, (statement,), explicit_deny=True)
            if result == PermissionResult.PERMITTED:
                allowed.append(statement)
        return Decision(bool(allowed), tuple(allowed))


def _policy_documents(
    role: str, properties: Mapping[str, Any], template: Mapping[str, Any], values: PolicyValues
) -> Iterator[tuple[str, Any]]:
    """(policy name, document) of every policy attached to ``role``: inline, managed, AWS::IAM::Policy."""
    for policy in values.resolve(properties.get("Policies") or []):
        yield str(policy["PolicyName"]), policy["PolicyDocument"]
    for arn in values.resolve(properties.get("ManagedPolicyArns") or []):
        document = _aws_managed_policies().get(arn)
        if document is None:
            owned = [
                lid
                for lid, resource in template.get("Resources", {}).items()
                if resource.get("Type") == IAM_MANAGED_POLICY and values.resolve({"Ref": lid}) == arn
            ]
            if not owned:
                raise PolicyError(f"{role}: managed policy {arn} is neither an AWS managed policy nor in the template")
            document = values.resolve(template["Resources"][owned[0]]["Properties"]["PolicyDocument"])
            yield owned[0], document
        else:
            yield arn.removeprefix(AWS_MANAGED_POLICY_PREFIX).rpartition("/")[2], document
    for lid, resource in template.get("Resources", {}).items():
        if resource.get("Type") != IAM_POLICY:
            continue
        props = resource.get("Properties") or {}
        if any(r == {"Ref": role} for r in props.get("Roles") or []):
            if resource.get("Condition") and not values.stack.condition(resource["Condition"]):
                continue
            yield lid, values.resolve(props["PolicyDocument"])


def function_roles(
    template: Mapping[str, Any], stack: StackValues, function_names: Mapping[str, str]
) -> dict[str, FunctionRole]:
    """Each function's role from the transformed ``template``; ``function_names`` maps the logical
    ids of the functions the stack has (its conditions true) to their physical names."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    values = PolicyValues(stack, resources)
    roles: dict[str, FunctionRole] = {}
    for function, name in function_names.items():
        resource = resources.get(function) or {}
        if resource.get("Type") != LAMBDA_FUNCTION:
            raise PolicyError(f"{function}: no {LAMBDA_FUNCTION} of that name in the transformed template")
        role_ref = (resource.get("Properties") or {}).get("Role")
        if not (isinstance(role_ref, dict) and "Fn::GetAtt" in role_ref):
            raise PolicyError(f"{function}: Role {role_ref!r} does not name a role of the template (Fn::GetAtt)")
        role, _ = _get_att_args(role_ref["Fn::GetAtt"])
        if (resources.get(role) or {}).get("Type") != IAM_ROLE:
            raise PolicyError(f"{function}: its Role {role} is not an {IAM_ROLE} of the template")
        statements: list[Statement] = []
        for policy, document in _policy_documents(role, resources[role].get("Properties") or {}, template, values):
            for index, statement in enumerate(_as_list(document.get("Statement", []))):
                check_statement(f"{function}: {role} policy {policy} statement {index}", statement)
                statements.append(Statement(function, policy, index, statement))
        roles[function] = FunctionRole(function, name, role, f"{stack.stack_name}-{role}", statements)
    return roles


# -- the enforcer: checks calls, records what was used ------------------------------------------

# SQS and S3 answer in the query/XML protocols, the others in JSON: each service's own error code.
_DENIED_CODES: Final = {"sqs": ("AccessDenied", 403), "s3": ("AccessDenied", 403)}
_DEFAULT_DENIED: Final = ("AccessDeniedException", 400)


@dataclass
class Enforcer:
    roles: Mapping[str, FunctionRole]
    account_id: str
    # (statement key, action pattern, resource pattern) -> calls it allowed
    used: dict[tuple[str, str, str], int] = field(default_factory=dict)
    denied: list[dict[str, str]] = field(default_factory=list)
    unchecked: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def check(self, function: str, service: str, operation: str, params: Mapping[str, Any], region: str) -> None:
        """Raise ClientError as AWS would if ``function``'s role may not make this call."""
        role = self.roles.get(function)
        if role is None:
            return
        for request in requests_for(service, operation, params, CallSite(region, self.account_id)):
            decision = role.evaluate(request)
            if decision.allowed:
                self._record(decision, request)
                continue
            self._deny(role, service, operation, request, decision)

    def _record(self, decision: Decision, request: Request) -> None:
        with self._lock:
            for statement in decision.statements:
                for action, resource in statement.matching(request):
                    key = (statement.key, action, resource)
                    self.used[key] = self.used.get(key, 0) + 1

    def _deny(self, role: FunctionRole, service: str, operation: str, request: Request, decision: Decision) -> None:
        why = (
            f"with an explicit deny in an identity-based policy ({decision.statements[0].key})"
            if decision.explicit_deny
            else f"because no identity-based policy allows the {request.action} action"
        )
        message = (
            f"User: {role.principal(self.account_id)} is not authorized to perform: {request.action} "
            f"on resource: {request.resource} {why}"
        )
        code, status = _DENIED_CODES.get(service, _DEFAULT_DENIED)
        with self._lock:
            self.denied.append({"function": role.function, "action": request.action, "resource": request.resource})
        log.error("%s: %s denied (%s %s): %s", role.function, request.action, code, operation, message)
        raise ClientError(
            {
                "Error": {"Code": code, "Message": message},
                "ResponseMetadata": {
                    "RequestId": str(uuid.uuid4()),
                    "HostId": "",
                    "HTTPStatusCode": status,
                    "HTTPHeaders": {},
                    "RetryAttempts": 0,
                },
            },
            operation,
        )

    def report(self) -> dict[str, Any]:
        """Every statement with the action and resource patterns calls used, and the denied calls."""
        with self._lock:
            used = dict(self.used)
            denied = list(self.denied)
        statements = []
        for role in self.roles.values():
            for statement in role.statements:
                uses = {(a, r): n for (k, a, r), n in used.items() if k == statement.key}
                statements.append(
                    {
                        **statement.describe(),
                        "used": [{"action": a, "resource": r, "calls": n} for (a, r), n in sorted(uses.items())],
                    }
                )
        return {"statements": statements, "denied": denied}


def unexercised(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the reports of several runtimes (a test run starts many): the Allow statements no call
    used, and for the used ones the actions and resources no call needed; Deny statements apart."""
    merged: dict[tuple[str, str, int], dict[str, Any]] = {}
    for report in reports:
        for statement in report["statements"]:
            key = (statement["function"], statement["policy"], statement["statement"])
            entry = merged.setdefault(key, {**statement, "used": []})
            entry["used"] = entry["used"] + list(statement["used"])
    never: list[dict[str, Any]] = []
    partly: list[dict[str, Any]] = []
    denies: list[dict[str, Any]] = []
    for entry in merged.values():
        used_actions = {u["action"] for u in entry["used"]}
        used_resources = {u["resource"] for u in entry["used"]}
        plain = {k: v for k, v in entry.items() if k != "used"}
        if entry["Effect"] == "Deny":
            denies.append({**plain, "applied": bool(entry["used"])})
        elif not entry["used"]:
            never.append(plain)
        else:
            actions = [a for a in _as_list(entry.get("Action", [])) if a not in used_actions]
            resources = [r for r in _as_list(entry["Resource"]) if r not in used_resources]
            if actions or resources:
                partly.append({**plain, "unused_actions": actions, "unused_resources": resources})
    denied = [d for report in reports for d in report.get("denied", [])]
    return {"never_used": never, "partly_used": partly, "deny_statements": denies, "denied_calls": denied}


# -- the hook: which function is calling ----------------------------------------------------------

_acting: contextvars.ContextVar[str | None] = contextvars.ContextVar("callbridge_local_iam_function", default=None)
_bound: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_enforcer: Enforcer | None = None
_original_call: Callable[..., Any] | None = None
_original_submit: Callable[..., Any] | None = None
_install_lock = threading.Lock()
# botocore's one path of every generated operation method (not in its type stubs: private).
_CALL: Final = "_make_api_call"


@contextmanager
def acting_as(function: str) -> Iterator[None]:
    """AWS calls made in this block (and in pool threads it starts) are ``function``'s."""
    token = _acting.set(function)
    try:
        yield
    finally:
        _acting.reset(token)


def bind_client(client: Any, function: str) -> None:
    """Every call through ``client`` is ``function``'s (Lambda's SQS poller uses the function's role)."""
    _bound[client] = function


def _checked_call(self: BaseClient, operation_name: str, api_params: Any) -> Any:
    enforcer = _enforcer
    function = _bound.get(self) or _acting.get()
    if enforcer is not None and function is not None:
        meta = self.meta
        enforcer.check(function, meta.service_model.service_name, operation_name, api_params or {}, meta.region_name)
    assert _original_call is not None
    return _original_call(self, operation_name, api_params)


def _submit_in_context(self: concurrent.futures.ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    # Lambda gives every thread of the process the role's credentials; here the identity is a
    # context variable, which a pool thread would not inherit: run the task in the submitter's.
    assert _original_submit is not None
    if _acting.get() is None:
        return _original_submit(self, fn, *args, **kwargs)
    return _original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)


def install(enforcer: Enforcer) -> None:
    """Check every botocore call from now on, whenever its client was created (the check sits in
    BaseClient._make_api_call, the one path of every generated operation method)."""
    global _enforcer, _original_call, _original_submit
    with _install_lock:
        _enforcer = enforcer
        if _original_call is None:
            _original_call = getattr(BaseClient, _CALL)
            setattr(BaseClient, _CALL, _checked_call)
        if _original_submit is None:
            _original_submit = concurrent.futures.ThreadPoolExecutor.submit
            concurrent.futures.ThreadPoolExecutor.submit = _submit_in_context  # type: ignore[method-assign,assignment]


def uninstall() -> None:
    global _enforcer, _original_call, _original_submit
    with _install_lock:
        _enforcer = None
        if _original_call is not None:
            setattr(BaseClient, _CALL, _original_call)
            _original_call = None
        if _original_submit is not None:
            concurrent.futures.ThreadPoolExecutor.submit = _original_submit  # type: ignore[method-assign]
            _original_submit = None


def current() -> Enforcer | None:
    return _enforcer


def write_report(enforcer: Enforcer, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"iam-{os.getpid()}-{id(enforcer):x}.json"
    path.write_text(json.dumps(enforcer.report(), indent=1), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m callbridge_local.iam DIR`: the statements the runs that wrote DIR never used."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m callbridge_local.iam REPORT_DIR", file=sys.stderr)
        return 2
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(args[0]).glob("iam-*.json"))]
    print(json.dumps({"runtimes": len(reports), **unexercised(reports)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
