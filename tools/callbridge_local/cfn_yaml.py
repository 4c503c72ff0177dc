"""YAML loading for CloudFormation/SAM templates.

CloudFormation's short-form tags (``!Ref X``, ``!GetAtt A.B``, ``!Sub ...``) are turned into the
long form (``{"Ref": "X"}``, ``{"Fn::GetAtt": ["A", "B"]}``, ``{"Fn::Sub": ...}``) so that the rest of
the runtime handles exactly one representation, the one JSON templates use.

Every tag CloudFormation defines is read, also those of intrinsics the runtime does not resolve
(intrinsics.py refuses them where it reads a value): a template must load whatever its skipped
resources contain. Why this is not cfn-lint's decoder: docs/decisions/local-runtime.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# Tags whose long form is "Fn::<Name>"; !Ref, !Condition and !GetAtt are special-cased below.
_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)


class TemplateSyntaxError(ValueError):
    """The template is not valid YAML or uses a tag in a form CloudFormation rejects."""


def _node_value(loader: Any, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _fn_constructor(name: str) -> Any:
    def construct(loader: Any, node: yaml.Node) -> dict[str, Any]:
        return {f"Fn::{name}": _node_value(loader, node)}

    return construct


def _ref(loader: Any, node: yaml.Node) -> dict[str, Any]:
    return {"Ref": _node_value(loader, node)}


def _condition(loader: Any, node: yaml.Node) -> dict[str, Any]:
    return {"Condition": _node_value(loader, node)}


def _get_att(loader: Any, node: yaml.Node) -> dict[str, Any]:
    value = _node_value(loader, node)
    if isinstance(value, str):
        # "Resource.Attribute"; attribute names can contain dots themselves (Endpoint.Address),
        # resource logical ids cannot.
        resource, sep, attribute = value.partition(".")
        if not sep or not resource or not attribute:
            raise TemplateSyntaxError(f"!GetAtt {value!r} is not of the form Resource.Attribute")
        return {"Fn::GetAtt": [resource, attribute]}
    return {"Fn::GetAtt": value}


def _build_loader() -> Any:
    # A subclass, so that registering tags and dropping resolvers leaves yaml.SafeLoader untouched.
    # libyaml's parser when PyYAML has it (its wheels do): the template loads in a tenth of the time,
    # and every runtime start and test worker loads it; constructors and resolvers stay Python's.
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader: Any = type("CloudFormationLoader", (base,), {})
    # CloudFormation keeps unquoted dates (AWSTemplateFormatVersion: 2010-09-09) as strings.
    loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    loader.add_constructor("!Ref", _ref)
    loader.add_constructor("!Condition", _condition)
    loader.add_constructor("!GetAtt", _get_att)
    for name in _FN_TAGS:
        loader.add_constructor(f"!{name}", _fn_constructor(name))
    return loader


_LOADER = _build_loader()


def loads(text: str) -> Any:
    """Parse template text (YAML or JSON) into plain dicts/lists with long-form intrinsics."""
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise TemplateSyntaxError(str(exc)) from exc


def load(path: Path) -> Any:
    return loads(path.read_text(encoding="utf-8"))
