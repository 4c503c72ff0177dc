"""template.yaml as CloudFormation gets it: transformed by aws-sam-translator for every parameter
combination that adds or removes resources, then linted by cfn-lint (tools/callbridge_local/
stack_check.py). `sam validate --lint` sees the template before the transform and missed the
CallHistoryFunction <-> HttpApi cycle that made `sam deploy` fail; these tests see it."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.core import get_rules

from callbridge_local import cfn_yaml, cors, stack_check
from callbridge_local.intrinsics import Resolver, parameter_values
from callbridge_local.template import load_template

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
        "CrossOriginCallers",
        "FixedEgress",
        "EgressSubnetIds",
        "EgressSecurityGroupIds",
        "RecordingRetentionDays",
        "RecordingsTransitionDays",
    }
    # Each non-enumerated parameter is tried at its default and at another value.
    for name in ("AlarmEmail", "ContactReservedConcurrency", "EgressSubnetIds"):
        assert len({c[name] for c in combos}) == 2


@pytest.mark.parametrize(
    ("callers", "origins"),
    [
        (None, None),
        ("", None),
        ("https://mycompany.amocrm.ru", ["https://mycompany.amocrm.ru"]),
        ("https://a.amocrm.ru, https://a.kommo.com", ["https://a.amocrm.ru", "https://a.kommo.com"]),
    ],
)
def test_the_api_has_cors_only_for_the_origins_cross_origin_callers_lists(
    callers: str | None, origins: list[str] | None
):
    params = {} if callers is None else {"CrossOriginCallers": callers}
    template = load_template(ROOT / "template.yaml", params)
    resolver = Resolver(
        template, parameter_values(template, params), stack_name="s", region="eu-central-1", account_id="1"
    )
    body = template.resources["HttpApi"].properties["Body"]
    # Resolved as the stack would be: SAM writes the configuration inside the condition's Fn::If.
    resolved = resolver.resolve({cors.EXTENSION: body[cors.EXTENSION]})
    if origins is None:
        assert resolved == {}
        return
    assert resolved[cors.EXTENSION] == {
        "allowOrigins": origins,
        "allowMethods": ["POST"],
        "allowHeaders": _widget_headers(),
        "maxAge": 600,
    }


def _widget_headers() -> list[str]:
    """The headers the Kommo widget's fetch sets (widgets/kommo/script.js), in lower case: exactly
    what the preflight asks for, so the CORS must allow exactly these."""
    script = (ROOT / "widgets" / "kommo" / "script.js").read_text(encoding="utf-8")
    block = re.search(r"headers: \{(?P<headers>[^}]*)\}", script)
    assert block is not None
    return sorted(name.lower() for name in re.findall(r"'([A-Za-z-]+)':", block["headers"]))


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


def test_local_code_folders_survive_the_transform_relative_and_absolute():
    """The runtime finds each function's code from the transformed Code; a template written elsewhere
    (bench/benchmark.py's) names our folders by absolute path, and S3 keys lose leading slashes."""
    from callbridge_local import sam_transform

    function = {"Handler": "health.handler", "Runtime": "python3.12"}
    sam = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Resources": {
            "Relative": {"Type": "AWS::Serverless::Function", "Properties": {**function, "CodeUri": "functions/"}},
            "Absolute": {
                "Type": "AWS::Serverless::Function",
                "Properties": {**function, "CodeUri": "/srv/cb/functions"},
            },
        },
    }
    resources = sam_transform.transform(sam)["Resources"]
    assert sam_transform.local_code_path(resources["Relative"]["Properties"]["Code"]) == "functions/"
    assert sam_transform.local_code_path(resources["Absolute"]["Properties"]["Code"]) == "/srv/cb/functions"
