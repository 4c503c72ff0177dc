"""`callbridge users sync|unmapped` and `callbridge retailcrm register` against the local runtime,
with a fake Cloud PBX and a fake retailCRM on 127.0.0.1."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import pytest

from tests.fakes import crm_server
from tests.fakes.cloudpbx_api import PATH as PBX_PATH
from tests.fakes.cloudpbx_api import FakeCloudPbx
from tests.fakes.retailcrm import FakeRetailCrm
from tests.support import trusting_fakes_yaml

PBX_TOKEN = "cli-sync-pbx-token-0001"
CRM_KEY = "cli-retailcrm-key-0001"
CLIENT_ID = "cli-client-id-00000001"
ACCOUNT = """\
account: cli-sync
phone_region: RU
pbx:
  kind: cloudpbx
  api_url: {pbx}{path}
  token: {token}
  crm_tokens: [cli-sync-crm-token-001]
crms:
  - kind: retailcrm
    base_url: {crm}
    api_key: {crm_key}
    client_id: {client_id}
    module_code: callbridge-test
    external_phones:
      - {{site_code: shop1, external_phone: "+7-499-999-99-99"}}
users:
  - {{pbx_user: andy, extension: "100", retailcrm_user_id: 1}}
  - {{pbx_user: daria, extension: "200", retailcrm_user_id: 2, retailcrm_code: "201"}}
  - {{pbx_user: gone, extension: "300"}}
"""


@pytest.fixture
def fakes(tmp_path: Path) -> Iterator[tuple[FakeCloudPbx, FakeRetailCrm, Path]]:
    pbx = FakeCloudPbx(token=PBX_TOKEN)
    crm = FakeRetailCrm(api_key=CRM_KEY)
    with crm_server.serve(pbx) as pbx_url, crm_server.serve(crm) as crm_url:
        path = tmp_path / "cli-sync.yaml"
        path.write_text(
            trusting_fakes_yaml(
                ACCOUNT.format(
                    pbx=pbx_url, path=PBX_PATH, token=PBX_TOKEN, crm=crm_url, crm_key=CRM_KEY, client_id=CLIENT_ID
                )
            )
        )
        yield pbx, crm, path


def test_users_sync_and_unmapped(callbridge, fakes):
    pbx, _, path = fakes
    assert callbridge("accounts", "apply", str(path)).exit_code == 0

    result = callbridge("users", "sync", "cli-sync", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["pbx_users"] == 5
    assert sorted(report["unmapped"]) == ["mike", "serg", "test"]
    assert report["mapped_missing"] == ["gone"]
    assert pbx.calls("accounts") == [{"cmd": "accounts", "token": PBX_TOKEN}]

    listed = callbridge("users", "unmapped", "cli-sync", "--json")
    assert listed.exit_code == 0, listed.output
    assert {u["name"]: u["real_name"] for u in json.loads(listed.output)} == {
        "test": "Тестовый пользователь",
        "mike": "Семенов Михаил",
        "serg": "Чижиков Сергей",
    }

    # mike leaves the PBX: the list follows.
    pbx.accounts[:] = [a for a in pbx.accounts if a["name"] != "mike"]
    assert callbridge("users", "sync", "cli-sync").exit_code == 0
    names = {u["name"] for u in json.loads(callbridge("users", "unmapped", "cli-sync", "--json").output)}
    assert names == {"test", "serg"}
    table = callbridge("users", "unmapped", "cli-sync")
    assert "Чижиков Сергей" in table.output


def test_users_sync_reports_a_pbx_refusal(callbridge, fakes):
    pbx, _, path = fakes
    assert callbridge("accounts", "apply", str(path)).exit_code == 0
    pbx.token = "rotated-elsewhere"
    result = callbridge("users", "sync", "cli-sync")
    assert result.exit_code == 1
    assert "401" in result.output and PBX_TOKEN not in result.output


def test_users_sync_of_an_unknown_account(callbridge):
    result = callbridge("users", "sync", "no-such-account")
    assert result.exit_code == 1 and "no account no-such-account" in result.output


def test_retailcrm_register_is_idempotent(callbridge, fakes):
    _, crm, path = fakes
    assert callbridge("accounts", "apply", str(path)).exit_code == 0

    result = callbridge("retailcrm", "register", "cli-sync", "--base-url", "https://bridge.example.com/")
    assert result.exit_code == 0, result.output
    assert CLIENT_ID not in result.output
    assert crm.errors == []
    module = crm.modules["callbridge-test"]
    assert module["code"] == "callbridge-test" and module["active"] is True
    assert module["clientId"] == CLIENT_ID  # v5: top level
    telephony = module["integrations"]["telephony"]
    assert telephony["clientId"] == CLIENT_ID  # the vendor documentation's layout
    assert telephony["makeCallUrl"] == "https://bridge.example.com/v1/cli-sync/retailcrm/make-call"
    assert telephony["changeUserStatusUrl"] == "https://bridge.example.com/v1/cli-sync/retailcrm/user-status"
    assert telephony["additionalCodes"] == [{"userId": "1", "code": "100"}, {"userId": "2", "code": "201"}]
    assert telephony["externalPhones"] == [{"siteCode": "shop1", "externalPhone": "+7-499-999-99-99"}]
    # The logo and the page about this integration are the deployment's own (edge/static.py).
    assert module["logo"] == "https://bridge.example.com/v1/retailcrm/logo.svg"
    assert module["accountUrl"] == "https://bridge.example.com/v1/cli-sync/retailcrm/about"

    # Again, with another base URL: the one module is updated, not duplicated.
    again = callbridge("retailcrm", "register", "cli-sync", "--base-url", "https://new.example.com")
    assert again.exit_code == 0, again.output
    assert list(crm.modules) == ["callbridge-test"]
    assert crm.modules["callbridge-test"]["integrations"]["telephony"]["makeCallUrl"].startswith(
        "https://new.example.com/"
    )


def test_retailcrm_register_needs_a_retailcrm(callbridge):
    result = callbridge("retailcrm", "register", "demo", "--base-url", "https://bridge.example.com")
    assert result.exit_code == 1 and "has no retailCRM" in result.output


def test_the_module_logo_and_page_are_served(callbridge, fakes):
    """What the registered `logo` and `accountUrl` point at, fetched over HTTP as retailCRM's user's
    browser would: an SVG, and an HTML page naming the account (escaped), for nobody's credentials."""
    _, crm, path = fakes
    assert callbridge("accounts", "apply", str(path)).exit_code == 0
    result = callbridge("retailcrm", "register", "cli-sync", "--base-url", callbridge.bridge.base_url)
    assert result.exit_code == 0, result.output
    module = crm.modules["callbridge-test"]
    with urllib.request.urlopen(module["logo"], timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"] == "image/svg+xml"
        assert ElementTree.fromstring(response.read()).tag == "{http://www.w3.org/2000/svg}svg"
    with urllib.request.urlopen(module["accountUrl"], timeout=10) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/html")
        page = response.read().decode()
    assert "<code>cli-sync</code>" in page and "/v1/cli-sync/retailcrm/make-call" in page
    assert CLIENT_ID not in page and CRM_KEY not in page
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(callbridge.bridge.url("/v1/Not%20An%20Account/retailcrm/about"), timeout=10)
    assert refused.value.code == 404
