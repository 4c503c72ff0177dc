"""Resolution of CloudFormation intrinsic functions against locally created resources.

Only what template.yaml's transformed template needs where the runtime reads it (resource
properties it applies, function environments, event-source mappings, schedules): Ref to parameters,
resources and the pseudo parameters AWS::StackName, AWS::Region, AWS::AccountId, AWS::Partition and
AWS::URLSuffix; Fn::GetAtt; Fn::Sub (its string form); and conditions: Fn::If with AWS::NoValue,
Fn::Equals, Fn::Not and Condition. Parameters are String or Number. Anything else
is refused with an IntrinsicError that names it; values the runtime does not read (IAM policies,
outputs, skipped resources) are never resolved, so what they contain does not matter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from callbridge_local.template import Template, skip_reason

# What template.yaml uses: And/Or/Join/Select/GetAZs serve the FixedEgress option (its conditions,
# subnets and outputs); the runtime ignores the network itself but evaluates its conditions.
SUPPORTED_FUNCTIONS: Final = (
    "Fn::GetAtt", "Fn::Sub", "Fn::If", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Fn::Join", "Fn::Select",
    "Fn::GetAZs",
)  # fmt: skip
SUPPORTED_PARAMETER_TYPES: Final = ("String", "Number", "CommaDelimitedList")
URL_SUFFIX: Final = "amazonaws.com"
PARTITION: Final = "aws"


class IntrinsicError(ValueError):
    """An intrinsic cannot be resolved locally."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


# Ref AWS::NoValue: the enclosing key or list item disappears, as in CloudFormation.
NO_VALUE: Final = _NoValue()

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class _UnsupportedParameter:
    name: str
    type: str


@dataclass
class PhysicalResource:
    """What CloudFormation would answer for a created resource: its Ref value and attributes."""

    ref: Any
    attributes: dict[str, Any] = field(default_factory=dict)


def parameter_values(template: Template, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The stack's parameter values: defaults, replaced by overrides, checked like CloudFormation.

    A parameter of a type the runtime does not support is refused when something it reads refers
    to it, not before: a template may have such parameters for resources the runtime skips.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(template.parameters))
    if unknown:
        raise IntrinsicError(f"unknown template parameter(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    missing: list[str] = []
    for name, param in template.parameters.items():
        if param.type not in SUPPORTED_PARAMETER_TYPES:
            values[name] = _UnsupportedParameter(name, param.type)
            continue
        raw = overrides.get(name, param.default)
        if raw is None:
            missing.append(name)
            continue
        text = str(raw)
        if param.allowed_values is not None and text not in {str(v) for v in param.allowed_values}:
            allowed = ", ".join(str(v) for v in param.allowed_values)
            raise IntrinsicError(f"parameter {name}={text!r} is not one of: {allowed}")
        if param.type == "Number":
            try:
                number = float(text)
            except ValueError:
                raise IntrinsicError(f"parameter {name} must be a number, got {text!r}") from None
            if (param.min_value is not None and number < param.min_value) or (
                param.max_value is not None and number > param.max_value
            ):
                raise IntrinsicError(
                    f"parameter {name}={text} is outside {_scalar_text(param.min_value)}..{_scalar_text(param.max_value)}"
                )
        values[name] = [item.strip() for item in text.split(",")] if param.type == "CommaDelimitedList" else text
    if missing:
        flags = " ".join(f"--param {name}=..." for name in missing)
        raise IntrinsicError(f"template parameter(s) without a Default need a value: {flags}")
    return values


class Resolver:
    """Resolves intrinsics in template values; resources are registered as they are created."""

    def __init__(
        self,
        template: Template,
        parameters: Mapping[str, Any],
        *,
        stack_name: str,
        region: str,
        account_id: str,
    ) -> None:
        self.template = template
        self.parameters = dict(parameters)
        self.resources: dict[str, PhysicalResource] = {}
        self.region = region
        self.account_id = account_id
        self.stack_name = stack_name
        self.pseudo: dict[str, Any] = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::NoValue": NO_VALUE,
        }
        self._conditions: dict[str, bool] = {}

    def register(self, logical_id: str, resource: PhysicalResource) -> None:
        self.resources[logical_id] = resource

    # -- conditions ----------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self.template.conditions:
                raise IntrinsicError(f"unknown condition {name}")
            # Placeholder first so that a condition referring to itself fails instead of recursing.
            self._conditions[name] = False
            try:
                value = self.resolve(self.template.conditions[name])
            except IntrinsicError as exc:
                raise IntrinsicError(f"condition {name}: {exc}") from exc
            if not isinstance(value, bool):
                raise IntrinsicError(f"condition {name} does not evaluate to a boolean: {value!r}")
            self._conditions[name] = value
        return self._conditions[name]

    # -- values --------------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            key, arg = next(iter(value.items()))
            if key == "Ref":
                return self.ref(str(arg))
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if isinstance(key, str) and key.startswith("Fn::"):
                return self._function(key, arg)
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name.startswith("AWS::"):
            supported = ", ".join(sorted(self.pseudo))
            raise IntrinsicError(
                f"Ref {name}: pseudo parameter not supported by the local runtime (supported: {supported})"
            )
        if name in self.parameters:
            value = self.parameters[name]
            if isinstance(value, _UnsupportedParameter):
                raise IntrinsicError(
                    f"Ref {name}: parameters of type {value.type} are not supported by the local runtime "
                    f"(supported: {', '.join(SUPPORTED_PARAMETER_TYPES)})"
                )
            return value
        if name in self.resources:
            return self.resources[name].ref
        raise IntrinsicError(f"Ref {name}: {self._missing(name)}")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise IntrinsicError(f"Fn::GetAtt {logical_id}.{attribute}: {self._missing(logical_id)}")
        if attribute not in resource.attributes:
            known = ", ".join(sorted(resource.attributes)) or "none"
            raise IntrinsicError(
                f"Fn::GetAtt {logical_id}.{attribute}: attribute not emulated locally (known: {known})"
            )
        return resource.attributes[attribute]

    def _missing(self, logical_id: str) -> str:
        resource = self.template.resources.get(logical_id)
        if resource is None:
            return "no such parameter or resource"
        why = skip_reason(resource.type)
        if why is not None:
            return f"{logical_id} is an {resource.type}, which the local runtime does not emulate ({why})"
        if resource.condition is not None and not self.condition(resource.condition):
            return f"{logical_id} is not created: its condition {resource.condition} is false"
        return f"{logical_id} has not been created (yet)"

    def _function(self, name: str, arg: Any) -> Any:
        if name not in SUPPORTED_FUNCTIONS:
            raise IntrinsicError(
                f"{name} is not supported by the local runtime (supported: Ref, Condition, {', '.join(SUPPORTED_FUNCTIONS)})"
            )
        handler = getattr(self, "_fn_" + name[4:].lower())
        return handler(arg)

    def _fn_getatt(self, arg: Any) -> Any:
        if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
            raise IntrinsicError(f"Fn::GetAtt needs [Resource, Attribute], got {arg!r}")
        return self.get_att(arg[0], arg[1])

    def _fn_sub(self, arg: Any) -> str:
        if not isinstance(arg, str):
            raise IntrinsicError(f"Fn::Sub is supported by the local runtime only in its string form, got {arg!r}")

        def substitute(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if "." in expression and not expression.startswith("AWS::"):
                resource, _, attribute = expression.partition(".")
                value = self.get_att(resource, attribute)
            else:
                value = self.ref(expression)
            if isinstance(value, (dict, list)) or value is NO_VALUE:
                raise IntrinsicError(f"Fn::Sub variable ${{{expression}}} is not a string: {value!r}")
            return _scalar_text(value)

        return _SUB_VARIABLE.sub(substitute, arg)

    def _fn_if(self, arg: Any) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
            raise IntrinsicError(f"Fn::If needs [condition, then, else], got {arg!r}")
        return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])

    def _fn_equals(self, arg: Any) -> bool:
        arg = self.resolve(arg)
        if not (isinstance(arg, list) and len(arg) == 2):
            raise IntrinsicError(f"Fn::Equals needs two values, got {arg!r}")
        return _scalar_text(arg[0]) == _scalar_text(arg[1])

    def _fn_not(self, arg: Any) -> bool:
        arg = self.resolve(arg)
        if not (isinstance(arg, list) and len(arg) == 1 and isinstance(arg[0], bool)):
            raise IntrinsicError(f"Fn::Not needs [condition], got {arg!r}")
        return not arg[0]

    def _fn_and(self, arg: Any) -> bool:
        return all(self._booleans("Fn::And", arg))

    def _fn_or(self, arg: Any) -> bool:
        return any(self._booleans("Fn::Or", arg))

    def _booleans(self, name: str, arg: Any) -> list[bool]:
        arg = self.resolve(arg)
        if not (isinstance(arg, list) and arg and all(isinstance(item, bool) for item in arg)):
            raise IntrinsicError(f"{name} needs a list of conditions, got {arg!r}")
        return list(arg)

    def _fn_join(self, arg: Any) -> str:
        arg = self.resolve(arg)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
            raise IntrinsicError(f"Fn::Join needs [delimiter, [values]], got {arg!r}")
        return str(arg[0]).join(_scalar_text(item) for item in arg[1])

    def _fn_select(self, arg: Any) -> Any:
        arg = self.resolve(arg)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
            raise IntrinsicError(f"Fn::Select needs [index, [values]], got {arg!r}")
        try:
            return arg[1][int(arg[0])]
        except (ValueError, IndexError):
            raise IntrinsicError(f"Fn::Select index {arg[0]!r} is out of range") from None

    def _fn_getazs(self, arg: Any) -> list[str]:
        region = self.resolve(arg) or self.region
        return [f"{region}{zone}" for zone in "abc"]


def _scalar_text(value: Any) -> str:
    """The string CloudFormation substitutes for a scalar (true/false in lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def as_env_value(value: Any) -> str:
    """Environment variables are strings in Lambda; CloudFormation stringifies scalars the same way."""
    if isinstance(value, (dict, list)):
        raise IntrinsicError(f"environment variable value must be a scalar, got {value!r}")
    return _scalar_text(value)
