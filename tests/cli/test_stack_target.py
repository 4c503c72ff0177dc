"""`--stack-name`: the CLI finds a deployed stack's resources from its CloudFormation outputs."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from callbridge_cli.main import cli
from callbridge_local.emulator import aws_env
from callbridge_local.testing import moto_server, provisioned
from tests.cli.conftest import ROOT, forget_core_caches

OUTPUTS = {
    "AccountsTableName": "ACCOUNTS_TABLE",
    "CallsTableName": "CALLS_TABLE",
    "ContactsTableName": "CONTACTS_TABLE",
}


def test_stack_outputs_locate_the_resources():
    import boto3

    saved = dict(os.environ)
    try:
        with moto_server() as endpoint:
            # moto keeps its state per process: a stack of its own, not the tables of earlier tests
            env = provisioned(endpoint, ROOT / "template.yaml", stack_name="cb-stack")
            os.environ.update(aws_env(endpoint))
            outputs = {name: {"Value": env[var]} for name, var in OUTPUTS.items()}
            outputs["SsmPrefix"] = {"Value": env["SSM_PREFIX"]}
            outputs["ApiUrl"] = {"Value": "https://api.example.com"}
            body = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}, "Outputs": outputs}
            boto3.client("cloudformation", region_name="us-east-1").create_stack(
                StackName="cb-stack", TemplateBody=json.dumps(body)
            )
            runner = CliRunner()
            args = ["--stack-name", "cb-stack", "--region", "us-east-1"]
            applied = runner.invoke(cli, [*args, "accounts", "apply", str(ROOT / "accounts" / "demo.yaml")])
            assert applied.exit_code == 0, applied.output
            assert "applied to stack cb-stack (us-east-1)" in applied.output
            assert "https://api.example.com/v1/demo/cloudpbx" in applied.output
            listed = runner.invoke(cli, [*args, "accounts", "list", "--json"])
            assert listed.exit_code == 0 and [a["account"] for a in json.loads(listed.output)] == ["demo"]

            missing = runner.invoke(cli, ["--stack-name", "no-such-stack", "accounts", "list"])
            assert missing.exit_code == 1 and "cannot read stack no-such-stack" in missing.output
            both = runner.invoke(cli, [*args, "--local", "http://127.0.0.1:3000", "accounts", "list"])
            assert both.exit_code == 2
    finally:
        os.environ.clear()
        os.environ.update(saved)
        forget_core_caches()
