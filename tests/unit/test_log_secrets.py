"""The log-secrets check itself can fail: a leaked secret is found, the cabinet line is exempt."""

from __future__ import annotations

from pathlib import Path

from tests.log_secrets import configured_secrets, leaked_lines

ROOT = Path(__file__).resolve().parents[2]


def test_demo_secrets_are_found_and_a_leak_is_reported():
    secrets = configured_secrets(ROOT / "accounts")
    assert {"demo-crm-token-0001", "demo-pbx-token-0001", "demo-recordings-pass-0001"} <= secrets
    output = (
        "account demo: Cloud PBX → CRM key (crm_token): demo-crm-token-0001\n"
        '{"level":"INFO","message":"history stored","call_id":"X"}\n'
        '{"level":"ERROR","message":"auth failed","token":"demo-pbx-token-0001"}\n'
    )
    assert leaked_lines(output, secrets) == [output.splitlines()[2]]
