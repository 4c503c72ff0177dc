"""docs/deploy.md explains exactly the Parameters of template.yaml, with their defaults, and
samconfig.toml's environments are ones the SAM CLI can deploy: every override names a parameter
of the template with a value it allows."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## 7. Every parameter"
ROW = re.compile(r"^\| `(?P<name>[A-Za-z0-9]+)` \| (?P<default>[^|]+) \| (?P<what>.+) \|$")


# Reads a CloudFormation template: any short-form tag (`!Ref`, `!Sub`, ...) becomes None. The
# Parameters section has none; the rest of the template is not looked at here. A subclass, so that
# yaml.SafeLoader itself stays untouched.
_TemplateLoader: Any = type("TemplateLoader", (yaml.SafeLoader,), {})
_TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def template_parameters() -> dict[str, dict[str, Any]]:
    template = yaml.load((ROOT / "template.yaml").read_text(encoding="utf-8"), Loader=_TemplateLoader)
    parameters: dict[str, dict[str, Any]] = template["Parameters"]
    return parameters


def documented() -> dict[str, str]:
    """Parameter name → the default the guide gives, from the rows of its parameter table."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert SECTION in text, f"docs/deploy.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        match = ROW.match(line)
        if match:
            assert match["name"] not in rows, f"{match['name']} is listed twice"
            rows[match["name"]] = match["default"].strip()
    return rows


def shown_default(value: Any) -> str:
    return "(empty)" if value in ("", None) else f"`{value}`"


def test_the_guide_lists_every_parameter_of_the_template():
    assert set(documented()) == set(template_parameters())


def test_the_guide_gives_each_parameter_its_template_default():
    rows = documented()
    wrong = {
        name: (rows[name], shown_default(spec.get("Default")))
        for name, spec in template_parameters().items()
        if name in rows and rows[name] != shown_default(spec.get("Default"))
    }
    assert wrong == {}, "docs/deploy.md default != template.yaml Default"


def samconfig() -> dict[str, Any]:
    with (ROOT / "samconfig.toml").open("rb") as stream:
        return tomllib.load(stream)


def overrides(environment: str) -> dict[str, str]:
    text = samconfig()[environment]["deploy"]["parameters"].get("parameter_overrides", "")
    pairs = shlex.split(text) if isinstance(text, str) else list(text)
    return dict(pair.split("=", 1) for pair in pairs)


def allowed(spec: dict[str, Any], value: str) -> bool:
    if "AllowedValues" in spec and value not in {str(v) for v in spec["AllowedValues"]}:
        return False
    if spec["Type"] == "Number":
        number = float(value)
        return float(spec.get("MinValue", number)) <= number <= float(spec.get("MaxValue", number))
    return True


def test_samconfig_has_the_three_environments():
    config = samconfig()
    assert config["version"] == 0.1
    assert {"default", "dev", "prod"} <= set(config)
    stacks = {env: config[env]["global"]["parameters"]["stack_name"] for env in ("default", "dev", "prod")}
    assert len(set(stacks.values())) == 3, f"each environment needs its own stack: {stacks}"


@pytest.mark.parametrize("environment", ["default", "dev", "prod"])
def test_each_environment_deploys_with_allowed_parameters(environment: str):
    deploy = samconfig()[environment]["deploy"]["parameters"]
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()
    assert deploy["resolve_s3"] is True
    parameters = template_parameters()
    given = overrides(environment)
    unknown = set(given) - set(parameters)
    assert unknown == set(), f"samconfig.toml [{environment}] overrides no such template parameter"
    refused = {name: value for name, value in given.items() if not allowed(parameters[name], value)}
    assert refused == {}, f"samconfig.toml [{environment}] sets values the template does not allow"


def test_prod_confirms_every_change_and_leaves_the_alarm_address_to_the_operator():
    deploy = samconfig()["prod"]["deploy"]["parameters"]
    assert deploy["confirm_changeset"] is True
    assert "AlarmEmail" not in overrides("prod")
    assert int(overrides("prod")["LogRetentionDays"]) > int(overrides("dev")["LogRetentionDays"])
