"""docs/tenancy.md's table of the secrets each function may read is template.yaml's: every function
is listed once, with exactly the parts of `/callbridge/<stack>/accounts/*/` its SSMParameterReadPolicy
lines give it, and no other statement lets a function read a parameter."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = "callbridge/${AWS::StackName}/accounts/*"
ROW = re.compile(r"^\| (?P<functions>[A-Za-z0-9, ]+Function) \| (?P<parts>[^|]+) \| [^|]+ \|$")

# Reads a CloudFormation template keeping a short-form tag's scalar (`!Sub "a/${B}"` -> "a/${B}").
_Loader: Any = type("TemplateLoader", (yaml.SafeLoader,), {})
_Loader.add_multi_constructor(
    "!", lambda loader, suffix, node: loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None
)


def template_functions() -> dict[str, list[Any]]:
    template = yaml.load((ROOT / "template.yaml").read_text(encoding="utf-8"), Loader=_Loader)
    return {
        name: list(resource["Properties"].get("Policies") or [])
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def readable(policies: list[Any]) -> set[str]:
    """The parts of an account's path the function may read: "everything", or names below it."""
    parts: set[str] = set()
    for policy in policies:
        if isinstance(policy, dict) and "SSMParameterReadPolicy" in policy:
            name = str(policy["SSMParameterReadPolicy"]["ParameterName"])
            assert name.startswith(ACCOUNTS), f"a read policy outside the accounts' secrets: {name}"
            parts.add(name.removeprefix(ACCOUNTS).removeprefix("/") or "everything")
    return parts


def documented() -> dict[str, set[str]]:
    rows: dict[str, set[str]] = {}
    for line in (ROOT / "docs" / "tenancy.md").read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if not match:
            continue
        parts = match["parts"].strip()
        found = set() if parts == "nothing" else {p.strip().strip("`") for p in parts.split(",")}
        for function in match["functions"].split(","):
            assert function.strip() not in rows, f"{function.strip()} is listed twice"
            rows[function.strip()] = found
    return rows


def test_the_tenancy_table_is_what_the_template_grants() -> None:
    granted = {name: readable(policies) for name, policies in template_functions().items()}
    assert documented() == granted


def test_no_other_statement_reads_a_parameter() -> None:
    for name, policies in template_functions().items():
        for policy in policies:
            if not isinstance(policy, dict) or "Statement" not in policy:
                continue
            for statement in policy["Statement"]:
                actions = statement.get("Action")
                actions = [actions] if isinstance(actions, str) else actions or []
                reads = [a for a in actions if a.lower().startswith(("ssm:get", "ssm:*", "secretsmanager:"))]
                assert not reads, f"{name} reads parameters outside its SSMParameterReadPolicy lines: {reads}"


def test_the_counts_in_the_text_are_the_tables() -> None:
    granted = {name: readable(policies) for name, policies in template_functions().items()}
    everything = sum(1 for parts in granted.values() if "everything" in parts)
    none = sum(1 for parts in granted.values() if not parts)
    text = (ROOT / "docs" / "tenancy.md").read_text(encoding="utf-8")
    said = f"now {everything} can, {len(granted) - everything - none} read only a part, and {none} read none"
    assert said in " ".join(text.split()), said


def test_the_per_company_samconfig_example_deploys_two_stacks_with_allowed_parameters() -> None:
    """The `toml` block of docs/tenancy.md is a samconfig.toml the SAM CLI takes: an environment per
    company, each its own stack, s3 prefix and company tag, overriding only parameters the template
    has, with values it allows."""
    from tests.unit.test_deploy_docs import allowed, template_parameters

    text = (ROOT / "docs" / "tenancy.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    config = tomllib.loads(block)
    assert len(config) >= 2
    stacks = {env: config[env]["global"]["parameters"]["stack_name"] for env in config}
    assert len(set(stacks.values())) == len(config), stacks
    parameters = template_parameters()
    for env, sections in config.items():
        deploy = sections["deploy"]["parameters"]
        assert "CAPABILITY_IAM" in deploy["capabilities"].split() and deploy["resolve_s3"] is True
        assert deploy["s3_prefix"] == stacks[env] and f"company={env}" in deploy["tags"]
        given = dict(pair.split("=", 1) for pair in shlex.split(deploy["parameter_overrides"]))
        assert "AlarmEmail" not in given  # each first deploy asks for it
        refused = {k: v for k, v in given.items() if k not in parameters or not allowed(parameters[k], v)}
        assert refused == {}, f"[{env}] overrides the template does not take"
