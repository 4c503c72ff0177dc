"""Every file in events/ is invoked through its function's handler, so the samples that
`sam local invoke -e` would use stay true; each with its function's entry of the `--env-vars` file
the local runtime writes for `sam local` (callbridge_local/samlocal.py), the environment the README's
`sam local invoke … --env-vars` gives it."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from callbridge.store import calls
from callbridge_local.provision import ProvisionedStack
from callbridge_local.samlocal import write_sam_env_vars
from callbridge_local.template import load_template
from tests.integration.conftest import _reset_caches

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")

# What each sample must produce: (status code, JSON body) for HTTP functions, the result for others.
EXPECTED: dict[str, Any] = {
    "HealthFunction.json": (200, {"status": "ok"}),
    "CloudPbxFunction.history.json": (200, None),
    "CloudPbxFunction.event-incoming.json": (200, None),
    "CloudPbxFunction.contact.json": (200, {"contact_name": "Manager of Horns and Hooves LLC", "responsible": "andy"}),
    "CloudPbxFunction.wrong-token.json": (401, {"error": "Invalid token"}),
    "HistoryFunction.outgoing-busy.json": (200, None),
    "EventFunction.cancelled.json": (200, None),
    "ContactFunction.known-caller.json": (
        200,
        {"contact_name": "Manager of Horns and Hooves LLC", "responsible": "andy"},
    ),
    # The same caller written with the Russian trunk prefix (8...), which only the metadata can read.
    "ContactFunction.known-caller-trunk-prefix.json": (
        200,
        {"contact_name": "Manager of Horns and Hooves LLC", "responsible": "andy"},
    ),
    "CallSettleFunction.json": {"batchItemFailures": []},
    # The sample call has no stored recording: the same 404 as an unknown call.
    "RecordingsFunction.minicrm-not-fetched.json": (404, {"error": "Recording not found"}),
    "RecordingsFunction.wrong-password.json": (401, {"error": "Invalid credentials"}),
    "RecordingsFunction.signed-expired.json": (401, {"error": "Invalid or expired signature"}),
    # An unknown call: nothing to fetch, the message is done with.
    "RecordingFetchFunction.json": {"batchItemFailures": []},
    # Click-to-call (docs/clicktocall.md): the demo account has no retailCRM, and the sample sends no API key, so both are refused
    # before any PBX is asked.
    "MakeCallFunction.retailcrm-wrong-client-id.json": (401, {"error": "Invalid clientId"}),
    "MakeCallFunction.api-without-key.json": (401, {"error": "Invalid credentials"}),
    "UserStatusFunction.wrong-client-id.json": (401, {"error": "Invalid clientId"}),
    # On demand for named accounts; an unknown one is reported, not raised.
    "UserSyncFunction.unknown-account.json": {"synced": {}, "failed": {"no-such-account": "unknown account"}},
    # Delivery (docs/delivery.md): the demo account has no CRM, so a message for one is done with, and a drain
    # (a scheduled event's `account` is the AWS account, not ours) has nothing to deliver.
    "DeliveryFunction.crm-not-configured.json": {"batchItemFailures": []},
    # A card is never handed back, whatever became of it (here: no such CRM).
    "LiveCardFunction.crm-not-configured.json": {"batchItemFailures": []},
    "DeliveryDrainFunction.json": dict.fromkeys(
        (
            "claimed",
            "delivered",
            "duplicates",
            "rejected",
            "not_applicable",
            "failed",
            "retried",
            "deferred",
            "busy",
            "requests",
            "errors",
            "cards_failed",
            "cards_late",
            "recordings",
        ),
        0,
    )
    | {"per_crm": {}},
    # telediscount and ccrm.pl (docs/sources.md): the demo account is a Cloud PBX one, so its telediscount
    # address answers like a wrong secret, and the scheduled jobs find no account of their kind.
    "PbxWebhookFunction.telediscount-wrong-secret.json": (404, {"error": "Not found"}),
    "TelediscountReconcileFunction.json": {"kind": "telediscount", "accounts": {}},
    "CcrmPollFunction.json": {"kind": "ccrm", "accounts": {}},
    # No call of the demo account rings past the maximum ringing age (docs/missed-calls.md).
    "RingingSweepFunction.json": {"max_ringing_seconds": 900, "accounts": {}},
    # The calls API (docs/openapi.yaml): no Bearer key, the same 401 as a wrong one.
    "CallHistoryFunction.list-without-key.json": (401, {"error": "Invalid credentials"}),
    # The operator console (docs/console.md): its page is static; its API refuses a request without a key.
    "ConsoleFunction.page.json": (200, "text/html; charset=utf-8"),  # a str: the answer's Content-Type
    "ConsoleApiFunction.health-without-key.json": (401, {"error": "Invalid credentials"}),
    # The demo account's PBX API (pbx.example.com) is not reachable from a test: the run reports the
    # account as failed (and the Errors alarm would count it), it does not raise for every account.
    "CloudPbxReconcileFunction.json": {
        "kind": "cloudpbx",
        "accounts": {"demo": {"status": "failed", "error": "PbxRejected"}},
    },
}
SAMPLES = sorted(p.name for p in (ROOT / "events").glob("*.json"))


def test_every_sample_has_an_expectation_and_a_function():
    assert set(SAMPLES) == set(EXPECTED)
    for name in SAMPLES:
        assert name.split(".")[0] in TEMPLATE.functions, name


@pytest.fixture
def sam_env(cloud_stack: ProvisionedStack, tmp_path: Path) -> dict[str, dict[str, str]]:
    """The `sam local --env-vars` file for the provisioned cloud, written and read back as `sam
    local` reads it."""
    path = write_sam_env_vars(tmp_path / "env-vars.json", cloud_stack, public_base_url="http://127.0.0.1:3000")
    found: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return found


def invoke(name: str) -> Any:
    spec = TEMPLATE.functions[name.split(".")[0]]
    handler = getattr(importlib.import_module(spec.module_name), spec.function_name)
    return handler(json.loads((ROOT / "events" / name).read_text()), None)


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_event_through_its_handler(sam_env, monkeypatch, name):
    for variable, value in sam_env[name.split(".")[0]].items():
        monkeypatch.setenv(variable, value)
    _reset_caches()  # settings and clients are read again from this environment
    result = invoke(name)
    expected = EXPECTED[name]
    if isinstance(expected, tuple) and isinstance(expected[1], str):
        headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        assert (result["statusCode"], headers.get("content-type")) == expected
    elif isinstance(expected, tuple):
        body = result.get("body") or ""
        assert (result["statusCode"], json.loads(body) if body else None) == expected
    else:
        assert result == expected


def test_history_sample_stores_the_documented_call(cloud):
    invoke("CloudPbxFunction.history.json")
    call = calls.get_call("demo", "B10D0EB124F4E64AF4EA-1511")
    assert (call["phone"], call["outcome"], call["duration"]) == ("+79101234567", "answered", 124)
