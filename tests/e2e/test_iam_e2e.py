"""IAM as AWS enforces it (tools/callbridge_local/iam.py): a function whose role lacks a permission it
needs fails as it would on AWS, with an access-denied error naming the function and the action."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from callbridge_local.testing import running_bridge
from tests.support import form, seed_event

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
FORM = {"content-type": "application/x-www-form-urlencoded"}


def without_event_function_writes(template: str) -> str:
    """template.yaml with EventFunction's write access to the calls table taken away (read stays)."""
    start = template.index("\n  EventFunction:\n")
    policies = template.index("- DynamoDBCrudPolicy: {TableName: !Ref CallsTable}", start)
    assert policies < template.index("\n  ContactFunction:\n"), "EventFunction has no CRUD policy on CallsTable"
    return template[:policies] + template[policies:].replace("DynamoDBCrudPolicy", "DynamoDBReadPolicy", 1)


@pytest.fixture(scope="module")
def bridge_without_permission(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    project = tmp_path_factory.mktemp("iam")
    # The copy finds the code where the template's CodeUri/ContentUri say, beside it.
    for folder in ("functions", "layers"):
        (project / folder).symlink_to(ROOT / folder, target_is_directory=True)
    template = project / "template.yaml"
    template.write_text(without_event_function_writes((ROOT / "template.yaml").read_text(encoding="utf-8")))
    # Denied calls are this fixture's point: they must not fail its teardown.
    params = {"MissedCallSettleSeconds": "1"}
    with running_bridge(ROOT / "accounts", template=template, params=params, allow_denied=True) as bridge:
        yield bridge


def test_a_missing_permission_fails_the_webhook_with_access_denied_naming_function_and_action(
    bridge_without_permission: Any,
) -> None:
    bridge = bridge_without_permission
    with httpx.Client(base_url=bridge.base_url, timeout=10) as client:
        assert client.get("/health").status_code == 200  # the other functions are untouched
        response = client.post(
            "/v1/demo/cloudpbx/event", content=form(**seed_event("INCOMING", callid="IAM-1")), headers=FORM
        )
        # Not stored, so not 2xx: the function answers 503 for a store it cannot write (the PBX
        # retries), as it would on AWS with this role.
        assert response.status_code == 503, response.text
        report = client.get("/_local/iam").json()
    lines = bridge.wait_for_output("AccessDeniedException")
    assert lines, bridge.output()
    denied = re.search(r"EventFunction: (dynamodb:\w+) denied \(AccessDeniedException (\w+)\)", "\n".join(lines))
    assert denied, lines
    action = denied.group(1)
    assert action in {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"}
    assert (
        "is not authorized to perform: " + action + " on resource: arn:aws:dynamodb:us-east-1:123456789012:"
        "table/callbridge-local-CallsTable because no identity-based policy allows the " + action + " action"
    ) in "\n".join(lines)
    assert "assumed-role/callbridge-local-EventFunctionRole/callbridge-local-EventFunction" in "\n".join(lines)
    assert {"function": "EventFunction", "action": action} in [
        {k: d[k] for k in ("function", "action")} for d in report["denied"]
    ]


def test_the_same_webhook_passes_with_the_template_as_it_is(bridge: Any) -> None:
    with httpx.Client(base_url=bridge.base_url, timeout=10) as client:
        response = client.post(
            "/v1/demo/cloudpbx/event", content=form(**seed_event("INCOMING", callid="IAM-2")), headers=FORM
        )
        assert response.status_code == 200, response.text
        report = client.get("/_local/iam").json()
    used = {(s["function"], u["action"]) for s in report["statements"] for u in s["used"]}
    assert ("EventFunction", "dynamodb:PutItem") in used or ("EventFunction", "dynamodb:UpdateItem") in used


def test_a_denied_call_the_product_swallows_still_fails_the_runtime_block(tmp_path: Path) -> None:
    """The product often carries on when a read fails (a missed call's owner falls back to the
    default user when the contacts cannot be read): on AWS that is a silent loss. So every test
    runtime fails when it ends if any call was denied, whatever the test saw."""
    project = tmp_path / "iam-swallowed"
    project.mkdir()
    for folder in ("functions", "layers"):
        (project / folder).symlink_to(ROOT / folder, target_is_directory=True)
    template = project / "template.yaml"
    template.write_text(without_event_function_writes((ROOT / "template.yaml").read_text(encoding="utf-8")))
    denied = pytest.raises(AssertionError, match=r"AWS would deny these calls[\s\S]*EventFunction: dynamodb:")
    params = {"MissedCallSettleSeconds": "1"}
    with denied, running_bridge(ROOT / "accounts", template=template, params=params) as bridge:
        event = form(**seed_event("INCOMING", callid="IAM-3"))
        httpx.post(f"{bridge.base_url}/v1/demo/cloudpbx/event", content=event, headers=FORM, timeout=10)
