"""The `sam local --env-vars` file the runtime writes (samlocal.py): one entry per function of the
template, holding only variables the function declares (the only ones `sam local` overrides), and
every name in it is a resource that exists in the runtime's emulated AWS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from callbridge_local.runtime import DEFAULT_ENV_VARS, parse_args
from callbridge_local.template import load_template

from .conftest import ROOT, TEMPLATE, local_runtime


def test_the_runtime_writes_every_functions_environment_pointing_at_its_emulated_aws(tmp_path: Path):
    path = tmp_path / "sam" / "env.json"
    template = load_template(TEMPLATE)
    with local_runtime(TEMPLATE, env_vars_path=path) as runtime:
        written = json.loads(path.read_text(encoding="utf-8"))
        stack = runtime.stack
        assert stack is not None
        assert set(written) == set(template.functions)  # every function exists with the default parameters
        for logical_id, env in written.items():
            declared = set(template.functions[logical_id].environment)
            assert set(env) <= declared, f"{logical_id}: sam local would drop {set(env) - declared}"
            assert env["AWS_ENDPOINT_URL"] == runtime.aws_endpoint
            assert all(isinstance(v, str) for v in env.values())
            if "PUBLIC_BASE_URL" in env:
                assert env["PUBLIC_BASE_URL"] == runtime.base_url  # recording links reach this gateway
        merged = {k: v for env in written.values() for k, v in env.items()}
        target = stack.target
        dynamodb, sqs, s3 = target.client("dynamodb"), target.client("sqs"), target.client("s3")
        tables = {k: v for k, v in merged.items() if k.endswith("_TABLE")}
        assert {"ACCOUNTS_TABLE", "CALLS_TABLE", "CONTACTS_TABLE", "ROUTING_CACHE_TABLE"} <= set(tables)
        for table in tables.values():
            assert dynamodb.describe_table(TableName=table)["Table"]["TableStatus"] == "ACTIVE"
        queues = {k: v for k, v in merged.items() if k.endswith("_QUEUE_URL")}
        assert {"SETTLE_QUEUE_URL", "RECORDING_QUEUE_URL", "DELIVERY_QUEUE_URL"} <= set(queues)
        for url in queues.values():
            sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        s3.head_bucket(Bucket=merged["RECORDINGS_BUCKET"])


def test_the_command_line_writes_it_beside_the_template_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.delenv("CALLBRIDGE_ENV_VARS", raising=False)
    assert parse_args([]).env_vars_path == ROOT / DEFAULT_ENV_VARS
    assert parse_args(["--env-vars", ""]).env_vars_path is None
    assert parse_args(["--env-vars", str(tmp_path / "e.json")]).env_vars_path == tmp_path / "e.json"
    monkeypatch.setenv("CALLBRIDGE_ENV_VARS", str(tmp_path / "f.json"))
    assert parse_args([]).env_vars_path == tmp_path / "f.json"
