"""`callbridge accounts apply|list|show` against the local runtime."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import ROOT

ACCOUNT = """\
account: cli-acme
name: Acme CLI test
phone_region: RU
pbx:
  kind: cloudpbx
  api_url: https://pbx.example.com/sys/crm_api.wcgp
  token: cli-pbx-token-000000001
  crm_tokens: [cli-crm-token-00000001]
users:
  - {pbx_user: ann, name: Ann, extension: "201"}
contacts:
  - {name: Good, phones: ["+7 910 000-00-01"]}
  - {name: Bad, phones: ["not a phone"]}
recordings:
  basic_auth: {username: cli-minicrm, password: cli-recordings-pass-01}
"""


def test_apply_prints_what_to_paste_and_stores_no_secret_in_dynamodb(callbridge, bridge, tmp_path: Path):
    path = tmp_path / "acme.yaml"
    path.write_text(ACCOUNT)
    result = callbridge("accounts", "apply", str(path))
    assert result.exit_code == 0, result.output
    assert "account cli-acme applied" in result.output
    assert f"{bridge.base_url}/v1/cli-acme/cloudpbx" in result.output
    assert "cli-crm-token-00000001" in result.output  # the key to paste, on the operator's terminal
    assert "contacts stored: 1" in result.output
    assert "not a phone" in result.output

    items = bridge.client("dynamodb").scan(TableName=bridge.env["ACCOUNTS_TABLE"])["Items"]
    dumped = json.dumps(items)
    for secret in ("cli-pbx-token-000000001", "cli-crm-token-00000001", "cli-recordings-pass-01"):
        assert secret not in dumped


def test_list_and_show_mask_secrets(callbridge, tmp_path: Path):
    path = tmp_path / "acme.yaml"
    path.write_text(ACCOUNT)
    assert callbridge("accounts", "apply", str(path)).exit_code == 0

    listed = callbridge("accounts", "list", "--json")
    assert listed.exit_code == 0, listed.output
    accounts = {a["account"]: a for a in json.loads(listed.output)}
    assert {"demo", "cli-acme"} <= set(accounts)
    assert accounts["cli-acme"]["pbx"] == "cloudpbx"

    table = callbridge("accounts", "list")
    assert table.exit_code == 0 and "cli-acme" in table.output and "Demo Trading LLC" in table.output

    shown = callbridge("accounts", "show", "cli-acme")
    assert shown.exit_code == 0, shown.output
    assert "Acme CLI test" in shown.output and "ann" in shown.output
    assert "crm_token: '********'" in shown.output
    assert "recordings_password: '********'" in shown.output
    for secret in ("cli-pbx-token-000000001", "cli-crm-token-00000001", "cli-recordings-pass-01"):
        assert secret not in shown.output

    as_json = json.loads(callbridge("accounts", "show", "cli-acme", "--json").output)
    assert as_json["secrets"]["pbx_token"] == "********"


def test_errors_have_trustworthy_exit_codes(callbridge, tmp_path: Path):
    missing = callbridge("accounts", "show", "no-such-account")
    assert missing.exit_code == 1 and "no account 'no-such-account'" in missing.output

    bad = tmp_path / "bad.yaml"
    bad.write_text("account: Bad Id\nphone_region: RU\npbx: {kind: cloudpbx}\n")
    invalid = callbridge("accounts", "apply", str(bad))
    assert invalid.exit_code == 1 and "is not a valid account file" in invalid.output and "account:" in invalid.output

    assert callbridge("accounts", "apply", str(tmp_path / "nope.yaml")).exit_code == 2
    assert callbridge("accounts", "frobnicate").exit_code == 2
    assert callbridge("accounts", "apply", "--dry-run", str(ROOT / "accounts" / "demo.yaml")).exit_code == 0


def test_unreachable_local_runtime_is_a_failure_not_a_traceback(tmp_path: Path):
    from click.testing import CliRunner

    from callbridge_cli.main import cli

    result = CliRunner().invoke(cli, ["--local", "http://127.0.0.1:9", "accounts", "list"])
    assert result.exit_code == 1
    assert "no local runtime answers at http://127.0.0.1:9" in result.output
    assert "Traceback" not in result.output
