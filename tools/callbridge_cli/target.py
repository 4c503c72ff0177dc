"""Where the CLI acts: a deployed stack (its resources found from the stack's outputs) or the local
runtime of `make run` (its `GET /_local/env`).

The core (callbridge.*) reads its table names and AWS endpoint from the environment, exactly as in
Lambda; connecting sets that environment in this process and drops the core's cached clients."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import click

from callbridge_cli.errors import CliError

DEFAULT_LOCAL_URL = "http://127.0.0.1:3000"

# Stack output → the environment variable the core reads. Outputs marked optional may be missing
# from stacks deployed before the feature that added them.
STACK_OUTPUTS: Mapping[str, str] = {
    "AccountsTableName": "ACCOUNTS_TABLE",
    "CallsTableName": "CALLS_TABLE",
    "ContactsTableName": "CONTACTS_TABLE",
    "SsmPrefix": "SSM_PREFIX",
}
OPTIONAL_STACK_OUTPUTS: Mapping[str, str] = {
    "RecordingsBucketName": "RECORDINGS_BUCKET",
    "RecordingFetchQueueUrl": "RECORDING_QUEUE_URL",
    "CallSettleQueueUrl": "SETTLE_QUEUE_URL",
    "RoutingCacheTableName": "ROUTING_CACHE_TABLE",
}
# Variables that could send a local session to real AWS (or a stack session to a stale emulator).
_AWS_ROUTING = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class TargetOptions:
    """The global options, kept until a command needs AWS (so that `--help` never connects)."""

    local_url: str | None
    stack_name: str | None
    region: str | None
    profile: str | None


@dataclass
class Target:
    kind: str  # "local" | "stack"
    label: str
    base_url: str  # public base URL of the API: what the PBX and CRM cabinets get
    env: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def egress_ips(self) -> list[str]:
        """The stack's fixed public IPs (output EgressIps, FixedEgress one-az/two-az); none otherwise."""
        return [ip.strip() for ip in self.outputs.get("EgressIps", "").split(",") if ip.strip()]

    def activate(self) -> None:
        from callbridge.core.accounts import clear_account_cache
        from callbridge.infra import aws, secrets
        from callbridge.infra.settings import reset_settings

        os.environ.update(self.env)
        reset_settings()
        aws.reset_clients()
        secrets.reset_secret_cache()
        clear_account_cache()


def _get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the operator's own --local URL
        return json.load(response)


def local_target(url: str) -> Target:
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise click.UsageError(f"--local must be an http(s) URL, got {url!r}")
    try:
        info = _get_json(base + "/_local/env")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CliError(
            f"no local runtime answers at {base} ({exc}); start it with `make run`, or pass --stack-name"
        ) from None
    for name in _AWS_ROUTING:
        os.environ.pop(name, None)
    env = {
        **{str(k): str(v) for k, v in info["aws"].items()},
        **{str(k): str(v) for k, v in info["environment"].items()},
    }
    return Target(kind="local", label=f"local runtime {base}", base_url=base, env=env)


def stack_target(stack_name: str, region: str | None, profile: str | None) -> Target:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        session = boto3.session.Session(profile_name=profile, region_name=region)
        stacks = session.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise CliError(f"cannot read stack {stack_name}: {exc}") from None
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stacks[0].get("Outputs", [])}
    missing = [name for name in STACK_OUTPUTS if name not in outputs]
    if missing:
        raise CliError(f"stack {stack_name} has no output {', '.join(missing)}: is it a CallBridge stack?")
    env = {var: outputs[name] for name, var in {**STACK_OUTPUTS, **OPTIONAL_STACK_OUTPUTS}.items() if name in outputs}
    if profile:
        env["AWS_PROFILE"] = profile
    if session.region_name:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = session.region_name
    return Target(
        kind="stack",
        label=f"stack {stack_name} ({session.region_name})",
        base_url=outputs.get("ApiUrl", "").rstrip("/"),
        env=env,
        outputs=outputs,
    )


def connect(options: TargetOptions) -> Target:
    if options.stack_name and options.local_url:
        raise click.UsageError("pass either --stack-name (a deployed stack) or --local (the local runtime), not both")
    if options.stack_name:
        target = stack_target(options.stack_name, options.region, options.profile)
    else:
        target = local_target(options.local_url or DEFAULT_LOCAL_URL)
    target.activate()
    return target
