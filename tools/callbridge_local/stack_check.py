"""Would CloudFormation take this template? Checked on what it would be given: the transformed one.

`sam validate --lint` lints the SAM template, before the transform. What CloudFormation refuses is often
only visible after it: a function that names its own HTTP API (`!Sub "${HttpApi}"`) is fine in SAM, but
the transform writes the function's ARN into the API's OpenAPI body, and the stack then has a dependency
cycle that CloudFormation refuses at `sam deploy`. So this check

1. transforms the template with aws-sam-translator (sam_transform.py) once per combination of the
   parameters the template's Conditions read (each adds or removes resources), and
2. lints each distinct output with cfn-lint, which weighs every scenario of the conditions: E3004
   finds dependency cycles over every Ref, Fn::GetAtt, Fn::Sub and DependsOn; E1010/E1019/E1020/E3005
   a reference to something that does not exist; W1001 a reference to a resource whose condition may
   be false where the reference stands; the rest of its rules whatever else CloudFormation or the
   resource schemas refuse.

`python -m callbridge_local.stack_check [template.yaml]` prints every finding and exits 1 if any.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfnlint.api import ManualArgs, lint

from callbridge_local import cfn_yaml, sam_transform

# The rules whose silence this check relies on; a cfn-lint upgrade that drops one fails the tests.
KEY_RULES = ("E3004", "E1010", "E1019", "E1020", "E3005", "W1001")

# Findings on what the transform itself writes, not on our template: SAM's SQSPollerPolicy grants
# sqs:ChangeMessageVisibilityBatch and sqs:DeleteMessageBatch, which IAM does not list as actions
# (the batch calls are authorised by their single-message actions). Matched by rule and text, so the
# same warning on a statement of ours still fails.
_TRANSFORM_OWN = (("W3037", "'changemessagevisibilitybatch'"), ("W3037", "'deletemessagebatch'"))


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str
    where: str

    def __str__(self) -> str:
        return f"{self.rule} {self.message} ({self.where})"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if set(node) == {"Ref"} and isinstance(node["Ref"], str):
            yield node["Ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def condition_parameters(template: Mapping[str, Any]) -> list[str]:
    """The parameters the Conditions (and so the set of resources) depend on."""
    parameters = template.get("Parameters") or {}
    return sorted({name for name in _refs(template.get("Conditions") or {}) if name in parameters})


def parameter_combinations(template: Mapping[str, Any]) -> list[dict[str, str]]:
    """The combinations that can add or remove resources: every allowed value of each condition
    parameter that lists its values (FixedEgress), crossed with two profiles of the others: all at
    their defaults, and all set (AlarmEmail given, a reserved concurrency, subnets named, browser
    origins allowed)."""
    parameters = template.get("Parameters") or {}
    names = condition_parameters(template)
    enumerated = [name for name in names if parameters[name].get("AllowedValues")]
    free = [name for name in names if name not in enumerated]
    profiles = [
        {name: str(parameters[name].get("Default", "")) for name in free},
        {name: _sample(name, parameters[name]) for name in free},
    ]
    combos = []
    for values in itertools.product(*(map(str, parameters[name]["AllowedValues"]) for name in enumerated)):
        for profile in profiles:
            combos.append({**dict(zip(enumerated, values, strict=True)), **profile})
    return combos


def _sample(name: str, parameter: Mapping[str, Any]) -> str:
    """A value other than the default, shaped as the parameter's resources expect."""
    kind = str(parameter.get("Type"))
    if kind == "Number":
        return str(int(float(parameter.get("Default", 0))) + max(1, int(float(parameter.get("MinValue", 1)))))
    if kind == "CommaDelimitedList":
        if "Origin" in name or "Caller" in name:
            # CrossOriginCallers: browser origins (the Kommo widget's), which the CORS of the API lists.
            return "https://mycompany.amocrm.ru,https://mycompany.kommo.com"
        prefix = "sg" if "SecurityGroup" in name else "subnet"
        return f"{prefix}-0123456789abcdef0,{prefix}-0fedcba9876543210"
    return "ops@example.com" if "Email" in name else "sample"


def _own_to_transform(rule: str, message: str) -> bool:
    return any(rule == own_rule and text in message for own_rule, text in _TRANSFORM_OWN)


def lint_transformed(transformed: Mapping[str, Any]) -> list[Finding]:
    """cfn-lint's findings (errors and warnings) on a transformed template. No parameter values are
    fixed: cfn-lint then weighs every scenario of the template's conditions itself (W1001), and its
    cycle check (E3004) follows every edge of every scenario at once."""
    config = ManualArgs(regions=[sam_transform.DEFAULT_REGION])
    findings = []
    for match in lint(json.dumps(transformed), config=config):
        rule = match.rule.id
        if _own_to_transform(rule, match.message) or rule.startswith("I"):
            continue
        path = "/".join(str(p) for p in (match.path or []))
        findings.append(Finding(rule, match.message, path or f"line {match.linenumber}"))
    return findings


def check_template(sam_template: Mapping[str, Any]) -> list[Finding]:
    """Transform for every parameter combination that can add or remove resources; lint each distinct
    output (the transform writes the conditions through, so combinations differ only where the
    translator inlines a parameter, as CrossOriginCallers' origins in the API's CORS, and one lint
    covers each output). A transform failure is a finding too."""
    findings: list[Finding] = []
    outputs: dict[str, Mapping[str, Any]] = {}
    for parameters in parameter_combinations(sam_template):
        try:
            transformed = sam_transform.transform(sam_template, parameters)
        except Exception as error:  # the translator's own errors name the resource and property
            values = ", ".join(f"{k}={v}" for k, v in sorted(parameters.items()))
            findings.append(Finding("transform", f"[{values}] {error}", "aws-sam-translator"))
            continue
        outputs.setdefault(json.dumps(transformed, sort_keys=True), transformed)
    for output in outputs.values():
        findings.extend(lint_transformed(output))
    return findings


def check_file(path: Path) -> list[Finding]:
    return check_template(cfn_yaml.load(path))


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    path = Path(args[0] if args else "template.yaml")
    sam_template = cfn_yaml.load(path)
    combos = parameter_combinations(sam_template)
    findings = check_template(sam_template)
    for finding in findings:
        print(finding)
    names = ", ".join(condition_parameters(sam_template))
    print(
        f"{path}: transformed for {len(combos)} parameter combinations ({names}) and linted: {len(findings)} findings"
    )
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
