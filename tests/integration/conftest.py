"""Integration fixtures: one moto server (HTTP, as boto3 talks to AWS) per session, reset and
re-provisioned from template.yaml before every test, with the demo account applied."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from callbridge.core import accounts
from callbridge.core.config import load_account_file
from callbridge.features.admin import apply_account
from callbridge.infra import aws, secrets, settings
from callbridge_local.provision import AwsTarget, ProvisionedStack, provision
from callbridge_local.template import load_template
from callbridge_local.testing import moto_server

ROOT = Path(__file__).resolve().parents[2]


# The parameters the cloud is provisioned with.
CLOUD_PARAMS = {"MissedCallSettleSeconds": "0"}


def _reset_caches() -> None:
    settings.reset_settings()
    aws.reset_clients()
    accounts.clear_account_cache()
    secrets.reset_secret_cache()


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def cloud(cloud_stack: ProvisionedStack) -> dict[str, str]:
    """A freshly provisioned emulated AWS with the demo account; the functions' env."""
    return cloud_stack.environment


@pytest.fixture
def cloud_stack(aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProvisionedStack]:
    """What `cloud` provisions, as the stack (the sample-event test writes its `sam local` file)."""
    request = urllib.request.Request(f"{aws_endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=10).close()
    for name, value in {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    stack = provision(load_template(ROOT / "template.yaml"), AwsTarget(aws_endpoint), params=CLOUD_PARAMS)
    for name, value in stack.environment.items():
        monkeypatch.setenv(name, value)
    _reset_caches()
    apply_account(load_account_file(ROOT / "accounts" / "demo.yaml"))
    yield stack
    _reset_caches()
