"""template.yaml as CloudFormation gets it: transformed by aws-sam-translator for every parameter
combination that adds or removes resources, then linted by cfn-lint (tools/callbridge_local/
stack_check.py). `sam validate --lint` sees the template before the transform and missed the
CallHistoryFunction <-> HttpApi cycle that made `sam deploy` fail; these tests see it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from cfnlint.core import get_rules

from callbridge_local import cfn_yaml, stack_check

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sam_template() -> dict[str, Any]:
    loaded: dict[str, Any] = cfn_yaml.load(ROOT / "template.yaml")
    return loaded


def test_the_shipped_template_transforms_and_lints_clean_for_every_combination(sam_template):
    findings = stack_check.check_template(sam_template)
    assert findings == [], "\n".join(map(str, findings))


def test_every_allowed_fixed_egress_and_every_condition_parameter_is_tried(sam_template):
    combos = stack_check.parameter_combinations(sam_template)
    assert {c["FixedEgress"] for c in combos} == {"off", "one-az", "two-az", "own-subnets"}
    assert set(stack_check.condition_parameters(sam_template)) == {
        "AlarmEmail",
        "ContactReservedConcurrency",
        "FixedEgress",
        "EgressSubnetIds",
        "EgressSecurityGroupIds",
    }
    # Each non-enumerated parameter is tried at its default and at another value.
    for name in ("AlarmEmail", "ContactReservedConcurrency", "EgressSubnetIds"):
        assert len({c[name] for c in combos}) == 2


def test_the_rules_it_relies_on_are_in_cfn_lint():
    available = {rule.id for rule in get_rules([], [], [])}
    assert set(stack_check.KEY_RULES) <= available


def test_a_function_naming_its_own_http_api_is_a_cycle_and_a_dangling_reference_is_found(sam_template):
    """The regression itself (an API_URL of `!Sub "${HttpApi}"` on a function with HttpApi routes),
    and in the same template two references CloudFormation would refuse: a GetAtt of a resource
    that does not exist, and a Ref to a resource that exists only with FixedEgress on."""
    broken = copy.deepcopy(sam_template)
    history = broken["Resources"]["CallHistoryFunction"]["Properties"]
    history["Environment"]["Variables"]["API_URL"] = {
        "Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    }
    health = broken["Resources"]["HealthFunction"]["Properties"]
    health.setdefault("Environment", {"Variables": {}})["Variables"].update(
        NOWHERE={"Fn::GetAtt": ["NoSuchQueue", "Arn"]},
        EGRESS_VPC={"Ref": "EgressVpc"},
    )
    findings = stack_check.check_template(broken)
    rules = {f.rule for f in findings}
    cycle = [f for f in findings if f.rule == "E3004"]
    assert cycle and all("HttpApi" in f.message or "HttpApi" in f.where for f in cycle), findings
    assert any("CallHistoryFunction" in f.message or "CallHistoryFunction" in f.where for f in cycle)
    assert any("NoSuchQueue" in f.message for f in findings), findings
    assert "W1001" in rules, findings  # EgressVpc only exists when FixedEgress is one-az/two-az
