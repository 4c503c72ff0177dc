"""Resolution of CloudFormation intrinsic functions against locally provisioned resources.

Only what a template's properties and environment variables need: Ref, Fn::GetAtt, Fn::Sub,
Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap, Fn::If (and the condition functions), Fn::Base64,
Fn::GetAZs, Fn::Length and Fn::ToJsonString. Anything that would need another stack or a real
account (Fn::ImportValue, Fn::Cidr, SSM-typed parameters) fails with an explanation.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from callbridge_local.template import Template


class IntrinsicError(ValueError):
    """An intrinsic cannot be resolved locally."""


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


# Ref AWS::NoValue: the enclosing key or list item disappears, as in CloudFormation.
NO_VALUE: Final = _NoValue()

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


@dataclass
class PhysicalResource:
    """What CloudFormation would answer for a created resource: its Ref value and attributes."""

    ref: Any
    attributes: dict[str, Any] = field(default_factory=dict)


def parameter_values(template: Template, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The stack's parameter values: defaults, replaced by overrides, checked like CloudFormation."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(template.parameters))
    if unknown:
        raise IntrinsicError(f"unknown template parameter(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    missing: list[str] = []
    for name, param in template.parameters.items():
        raw = overrides.get(name, param.default)
        if raw is None:
            missing.append(name)
            continue
        if param.type.startswith("AWS::SSM::Parameter::Value"):
            raise IntrinsicError(f"parameter {name} of type {param.type} cannot be looked up locally")
        text = ",".join(str(v) for v in raw) if isinstance(raw, list) else str(raw)
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
        is_list = param.type == "CommaDelimitedList" or param.type.startswith("List<")
        values[name] = [item.strip() for item in text.split(",")] if is_list else text
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
        partition: str = "aws",
        url_suffix: str = "amazonaws.com",
    ) -> None:
        self.template = template
        self.parameters = dict(parameters)
        self.resources: dict[str, PhysicalResource] = {}
        self.pseudo: dict[str, Any] = {
            "AWS::StackName": stack_name,
            "AWS::Region": region,
            "AWS::AccountId": account_id,
            "AWS::Partition": partition,
            "AWS::URLSuffix": url_suffix,
            "AWS::StackId": (
                f"arn:{partition}:cloudformation:{region}:{account_id}:stack/{stack_name}/"
                "00000000-0000-0000-0000-000000000000"
            ),
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        self._conditions: dict[str, bool] = {}

    @property
    def region(self) -> str:
        return str(self.pseudo["AWS::Region"])

    @property
    def account_id(self) -> str:
        return str(self.pseudo["AWS::AccountId"])

    @property
    def stack_name(self) -> str:
        return str(self.pseudo["AWS::StackName"])

    def register(self, logical_id: str, resource: PhysicalResource) -> None:
        self.resources[logical_id] = resource

    # -- conditions ----------------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            if name not in self.template.conditions:
                raise IntrinsicError(f"unknown condition {name}")
            # Placeholder first so that a condition referring to itself fails instead of recursing.
            self._conditions[name] = False
            value = self.resolve(self.template.conditions[name])
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
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name].ref
        if name in self.template.resources:
            raise IntrinsicError(f"Ref {name}: resource {name} has not been created (yet)")
        raise IntrinsicError(f"Ref {name}: no such parameter or resource")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.resources.get(logical_id)
        if resource is None:
            if logical_id in self.template.resources:
                raise IntrinsicError(f"Fn::GetAtt {logical_id}.{attribute}: {logical_id} has not been created")
            raise IntrinsicError(f"Fn::GetAtt {logical_id}.{attribute}: no such resource")
        if attribute not in resource.attributes:
            known = ", ".join(sorted(resource.attributes)) or "none"
            raise IntrinsicError(
                f"Fn::GetAtt {logical_id}.{attribute}: attribute not emulated locally (known: {known})"
            )
        return resource.attributes[attribute]

    def _function(self, name: str, arg: Any) -> Any:
        handler = getattr(self, "_fn_" + name[4:].lower(), None)
        if handler is None:
            raise IntrinsicError(f"{name} is not supported by the local runtime")
        return handler(arg)

    def _fn_getatt(self, arg: Any) -> Any:
        arg = self.resolve(arg)
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        if not isinstance(arg, list) or len(arg) != 2:
            raise IntrinsicError(f"Fn::GetAtt needs [Resource, Attribute], got {arg!r}")
        return self.get_att(str(arg[0]), str(arg[1]))

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        elif isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], dict):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            raise IntrinsicError(f"Fn::Sub needs a string or [string, {{vars}}], got {arg!r}")
        if not isinstance(text, str):
            raise IntrinsicError(f"Fn::Sub template must be a string, got {text!r}")

        def substitute(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in variables:
                value = variables[expression]
            elif "." in expression and not expression.startswith("AWS::"):
                resource, _, attribute = expression.partition(".")
                value = self.get_att(resource, attribute)
            else:
                value = self.ref(expression)
            if isinstance(value, (dict, list)):
                raise IntrinsicError(f"Fn::Sub variable ${{{expression}}} is not a string: {value!r}")
            return _scalar_text(value)

        return _SUB_VARIABLE.sub(substitute, text)

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

    def _fn_split(self, arg: Any) -> list[str]:
        arg = self.resolve(arg)
        if not (isinstance(arg, list) and len(arg) == 2):
            raise IntrinsicError(f"Fn::Split needs [delimiter, string], got {arg!r}")
        return str(arg[1]).split(str(arg[0]))

    def _fn_findinmap(self, arg: Any) -> Any:
        arg = self.resolve(arg)
        if not (isinstance(arg, list) and len(arg) >= 3):
            raise IntrinsicError(f"Fn::FindInMap needs [map, key, key], got {arg!r}")
        try:
            return self.template.mappings[arg[0]][arg[1]][arg[2]]
        except (KeyError, TypeError):
            raise IntrinsicError(f"Fn::FindInMap {arg[:3]!r}: no such mapping entry") from None

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

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(_scalar_text(self.resolve(arg)).encode()).decode("ascii")

    def _fn_getazs(self, arg: Any) -> list[str]:
        region = self.resolve(arg) or self.region
        return [f"{region}{zone}" for zone in "abc"]

    def _fn_length(self, arg: Any) -> int:
        arg = self.resolve(arg)
        if not isinstance(arg, list):
            raise IntrinsicError(f"Fn::Length needs a list, got {arg!r}")
        return len(arg)

    def _fn_tojsonstring(self, arg: Any) -> str:
        return json.dumps(self.resolve(arg), separators=(",", ":"))

    def _fn_importvalue(self, arg: Any) -> Any:
        raise IntrinsicError(
            f"Fn::ImportValue {arg!r} needs another stack's exports; pass the value as a parameter instead"
        )


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
