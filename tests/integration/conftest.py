"""Integration fixtures: one moto server (HTTP, as boto3 talks to AWS) per test session, and for
every test a stack of its own in it: template.yaml provisioned into a fresh AWS account (moto keeps
each account's state apart) under a stack name of its own (S3 bucket names are global), with the
demo account applied. Nothing is reset between tests, so a suite sharing the server (the contract
tests' stack, provisioned once) keeps its state, and a test never sees another's."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from callbridge.core import accounts
from callbridge.core.config import load_account_file
from callbridge.features.admin import apply_account
from callbridge.infra import aws, secrets, settings
from callbridge_local.provision import AwsTarget, ProvisionedStack, provision
from callbridge_local.template import Template, load_template
from callbridge_local.testing import MOTO_ACCOUNT_ID, moto_server

ROOT = Path(__file__).resolve().parents[2]


# The parameters the cloud is provisioned with.
CLOUD_PARAMS = {"MissedCallSettleSeconds": "0"}
# AWS account ids (12 digits) and stack names for each test's stack; a worker has its own moto.
_stacks = itertools.count(1)


def _reset_caches() -> None:
    settings.reset_settings()
    aws.reset_clients()
    accounts.clear_account_cache()
    secrets.reset_secret_cache()


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def cloud_template() -> Template:
    return load_template(ROOT / "template.yaml")


@pytest.fixture
def cloud(cloud_stack: ProvisionedStack) -> dict[str, str]:
    """A freshly provisioned emulated AWS with the demo account; the functions' env."""
    return cloud_stack.environment


@pytest.fixture
def cloud_stack(
    aws_endpoint: str, cloud_template: Template, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ProvisionedStack]:
    """What `cloud` provisions, as the stack (the sample-event test writes its `sam local` file)."""
    number = next(_stacks)
    account_id = f"{200000000000 + number}"
    # The moto server runs in this process and reads the account of every request from here.
    monkeypatch.setenv(MOTO_ACCOUNT_ID, account_id)
    for name, value in {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    stack = provision(
        cloud_template, AwsTarget(aws_endpoint), stack_name=f"it{number}", params=CLOUD_PARAMS, account_id=account_id
    )
    for name, value in stack.environment.items():
        monkeypatch.setenv(name, value)
    _reset_caches()
    apply_account(load_account_file(ROOT / "accounts" / "demo.yaml"))
    yield stack
    _reset_caches()
