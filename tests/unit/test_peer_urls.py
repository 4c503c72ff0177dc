"""The CRM and PBX addresses of an account file (docs/accounts.md, "Outbound addresses"): https to a
public address unless the account trusts exactly that host:port; refused when the file is applied,
with the field named."""

from __future__ import annotations

import importlib
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from callbridge import registry
from callbridge.core.config import AccountConfig, _is_peer_url, load_account_file

# One account with every kind of address field: the PBX's and each CRM's.
PBXS: dict[str, tuple[dict[str, Any], str]] = {
    "cloudpbx": ({"kind": "cloudpbx", "crm_tokens": ["cloudpbx-crm-token-0001"], "token": "pbx-token-1"}, "api_url"),
    "telediscount": (
        {"kind": "telediscount", "api_key": "td-api-key-0001", "webhook_secret": "td-webhook-secret-0001"},
        "api_url",
    ),
    "ccrm": ({"kind": "ccrm", "api_key": "ccrm-api-key-0001"}, "base_url"),
}
CRMS: dict[str, dict[str, Any]] = {
    "minicrm": {"kind": "minicrm", "api_key": "minicrm-key-0001"},
    "retailcrm": {"kind": "retailcrm", "api_key": "retailcrm-key-0001", "client_id": "retailcrm-client-0001"},
}
GOOD = "https://crm.example.com"

BAD = [
    ("http://169.254.169.254/latest/meta-data/", "plain http"),
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://127.0.0.1:18081", "plain http"),
    ("https://127.0.0.1:18081", "loopback"),
    ("https://10.1.2.3", "private"),
    ("https://[::ffff:10.0.0.1]", "private"),
    ("https://[fd00::1]:8443", "private"),
    ("https://localhost:8443", "loopback"),
    ("https://crm.localhost", "loopback"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://crm.example.com:70/_", "scheme 'gopher'"),
    ("ftp://crm.example.com/", "scheme 'ftp'"),
    ("https://user:secret@crm.example.com/", "credentials"),
    ("https://crm.example.com:22/", "port 22"),
    ("crm.example.com", "scheme"),
]


def account(pbx_kind: str = "cloudpbx", **overrides: Any) -> dict[str, Any]:
    pbx, field = PBXS[pbx_kind]
    data: dict[str, Any] = {
        "account": "guarded",
        "phone_region": "RU",
        "pbx": {**pbx, field: "https://pbx.example.com/api"},
        "crms": [{**crm, "base_url": GOOD} for crm in CRMS.values()],
    }
    data.update(overrides)
    return data


def errors(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        AccountConfig.model_validate(data)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}


@pytest.mark.parametrize(("url", "why"), BAD)
@pytest.mark.parametrize("index", range(len(CRMS)), ids=list(CRMS))
def test_a_crm_address_that_is_not_public_https_is_refused_naming_the_field(index: int, url: str, why: str) -> None:
    data = account()
    data["crms"][index]["base_url"] = url
    found = errors(data)
    assert list(found) == [f"crms.{index}.base_url"], found
    assert why in found[f"crms.{index}.base_url"]


@pytest.mark.parametrize(("url", "why"), BAD)
@pytest.mark.parametrize("kind", list(PBXS))
def test_a_pbx_address_that_is_not_public_https_is_refused_naming_the_field(kind: str, url: str, why: str) -> None:
    data = account(kind)
    field = PBXS[kind][1]
    data["pbx"][field] = url
    found = errors(data)
    assert list(found) == [f"pbx.{field}"], found
    assert why in found[f"pbx.{field}"]


def test_trusted_hosts_lift_the_rules_for_exactly_those_host_ports() -> None:
    data = account(trusted_hosts=["127.0.0.1:18081", "[fd00::5]:8443"])
    data["pbx"]["api_url"] = "http://127.0.0.1:18081/sys/crm_api.wcgp"
    data["crms"][0]["base_url"] = "https://[fd00::5]:8443"
    config = AccountConfig.model_validate(data)
    assert config.pbx.trusted_hosts == {"127.0.0.1:18081", "[fd00::5]:8443"}
    assert all(crm.trusted_hosts == config.pbx.trusted_hosts for crm in config.crms)
    # Another port of a trusted host, or another host, stays refused.
    data["crms"][1]["base_url"] = "http://127.0.0.1:18082"
    assert list(errors(data)) == ["crms.1.base_url"]
    # No trust ever lets another scheme or credentials through.
    data["crms"][1]["base_url"] = "gopher://127.0.0.1:18081/"
    assert list(errors(data)) == ["crms.1.base_url"]
    data["crms"][1]["base_url"] = "http://u:p@127.0.0.1:18081/"
    assert list(errors(data)) == ["crms.1.base_url"]


@pytest.mark.parametrize(
    "entry", ["127.0.0.1", "pbx.lan", "http://127.0.0.1:80", "127.0.0.1:0", "127.0.0.1:*", "[::1]"]
)
def test_a_trusted_host_names_exactly_one_port(entry: str) -> None:
    assert list(errors(account(trusted_hosts=[entry]))) == ["trusted_hosts"]


def test_an_account_stored_before_the_rule_still_loads() -> None:
    """A stored account is not refused when read (its webhooks must still be stored); its requests
    are, on connect (tests/integration/test_http_retailcrm.py)."""
    stored = AccountConfig.model_validate(account()).public()
    stored["crms"][0]["base_url"] = "http://10.0.0.5"
    assert AccountConfig.from_stored("guarded", stored).crms[0].model_dump()["base_url"] == "http://10.0.0.5"


def test_the_cli_refuses_the_file_naming_the_field(tmp_path: Path) -> None:
    from callbridge_cli.main import cli

    path = tmp_path / "guarded.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            account: guarded
            phone_region: RU
            pbx: {kind: cloudpbx, crm_tokens: [cloudpbx-crm-token-0001], api_url: "http://169.254.169.254/x"}
            crms:
              - {kind: minicrm, api_key: minicrm-key-0001, base_url: "file:///etc/passwd"}
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(ValidationError):
        load_account_file(path)
    result = CliRunner().invoke(cli, ["accounts", "apply", "--dry-run", str(path)])
    assert result.exit_code != 0 and "crms.0.base_url: Value error, scheme 'file' is not allowed" in result.output
    # What no trust lifts is reported first; once it is fixed, the addresses the account must trust.
    path.write_text(path.read_text().replace("file:///etc/passwd", "https://r3.minicrm.io"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["accounts", "apply", "--dry-run", str(path)])
    assert result.exit_code != 0 and "pbx.api_url: plain http is allowed only" in result.output
    assert "trusted_hosts" in result.output


def test_every_address_field_of_every_package_is_checked() -> None:
    """A package's field that names where we send requests (…_url) is typed PeerUrl, so that the
    account's rules hold for it: a new CRM or PBX package cannot forget them."""
    unchecked = []
    for table in (registry.PBX, registry.CRM):
        for kind, package in table.items():
            model = importlib.import_module(f"{package}.settings").SETTINGS
            for name, field in model.model_fields.items():
                if name.endswith(("url", "_host", "endpoint")) and not _is_peer_url(field.annotation, field.metadata):
                    unchecked.append(f"{kind}.{name}")
    assert unchecked == [], f"address fields not typed PeerUrl (core/config.py): {unchecked}"


def test_crm_and_pbx_packages_reach_the_network_only_through_the_guard() -> None:
    """A CRM or PBX package sends requests through infra.http (HttpPeer, guarded_client): no httpx
    client or transport of its own, no socket."""
    import ast

    root = Path(__file__).resolve().parents[2] / "layers" / "common" / "python" / "callbridge"
    found: list[str] = []
    for package in ("crm", "pbx"):
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            where = path.relative_to(root)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    for name in names:
                        if name.split(".")[0] in {"requests", "urllib3", "aiohttp", "socket", "http"} or name in {
                            "urllib.request",
                            "httpcore",
                        }:
                            found.append(f"{where}:{node.lineno} imports {name}")
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                    target = node.func
                    if isinstance(target.value, ast.Name) and target.value.id == "httpx":
                        if target.attr in {"get", "post", "put", "patch", "delete", "request", "stream", "Client"}:
                            found.append(f"{where}:{node.lineno} httpx.{target.attr}()")
                        if target.attr in {"AsyncClient", "HTTPTransport", "AsyncHTTPTransport"}:
                            found.append(f"{where}:{node.lineno} httpx.{target.attr}()")
    assert found == [], "network access past the address guard (use callbridge.infra.http):\n" + "\n".join(found)
