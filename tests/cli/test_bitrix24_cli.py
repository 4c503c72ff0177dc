"""`callbridge accounts apply` and `callbridge bitrix24 authorize|users` for a Bitrix24 local
application, against the local runtime and the fake portal (with its OAuth server) on 127.0.0.1:
the client secret goes to SSM, the first tokens come from the code, the users are read with them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import crm_server
from tests.fakes.bitrix24 import CLIENT_ID, CLIENT_SECRET, MEMBER_ID, FakeBitrix24
from tests.support import trusting_fakes_yaml

ACCOUNT = """\
account: cli-b24app
phone_region: RU
pbx:
  kind: cloudpbx
  crm_tokens: [cli-b24app-crm-token-01]
crms:
  - kind: bitrix24
    app:
      portal: {url}
      client_id: {client_id}
      client_secret: {client_secret}
      member_id: {member_id}
      oauth_url: {url}
users:
  - {{pbx_user: andy, extension: "101", bitrix24_user_id: 7}}
  - {{pbx_user: gone, extension: "300", bitrix24_user_id: 30}}
"""


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[tuple[FakeBitrix24, Path]]:
    from callbridge.crm.bitrix24 import oauth

    fake = FakeBitrix24(code="unused-webhook-code", users={7: "101", 9: "103"})
    oauth.clear_cache()
    try:
        with crm_server.serve(fake) as url:
            fake.portal = url
            path = tmp_path / "cli-b24app.yaml"
            path.write_text(
                trusting_fakes_yaml(
                    ACCOUNT.format(url=url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, member_id=MEMBER_ID)
                )
            )
            yield fake, path
    finally:
        oauth.clear_cache()
    assert fake.errors == []


def test_authorize_then_users_as_an_application(callbridge, portal):
    fake, path = portal
    applied = callbridge("accounts", "apply", str(path))
    assert applied.exit_code == 0, applied.output
    assert "local application, uses only API, scopes: telephony, crm, user" in applied.output
    assert "callbridge bitrix24 authorize cli-b24app --crm bitrix24" in applied.output
    assert CLIENT_SECRET not in applied.output

    before = callbridge("bitrix24", "users", "cli-b24app")
    assert before.exit_code != 0 and "callbridge bitrix24 authorize" in before.output  # no tokens yet

    redirected = f"https://localhost/?code={fake.authorize()}&domain=x&member_id={MEMBER_ID}&scope=telephony"
    done = callbridge("bitrix24", "authorize", "cli-b24app", input=redirected + "\n")
    assert done.exit_code == 0, done.output
    assert f"{fake.portal}/oauth/authorize/?client_id={CLIENT_ID}" in done.output
    assert "authorized (tokens version 1)" in done.output
    assert not any(token in done.output for token in fake.seen_tokens)

    fake.expire_access()  # an hour later: the users are read after one refresh
    listed = callbridge("bitrix24", "users", "cli-b24app", "--json")
    assert listed.exit_code == 0, listed.output
    assert '"pbx_user": "andy"' in listed.output and '"gone"' in listed.output
    assert fake.grants == ["authorization_code", "refresh_token"]


def test_authorize_refuses_a_webhook_account_and_another_portals_code(callbridge, portal):
    fake, path = portal
    assert callbridge("accounts", "apply", str(path)).exit_code == 0
    fake.member_id = "0" * 32
    refused = callbridge("bitrix24", "authorize", "cli-b24app", "--code", fake.authorize())
    assert refused.exit_code != 0 and "member_id" in refused.output


def test_authorize_names_the_field_whose_address_the_guard_refused(callbridge, portal, monkeypatch):
    """An OAuth server whose name resolves to an address CallBridge never connects to (loopback, not
    in trusted_hosts; the apply cannot know without DNS): nothing is sent, and the operator is told
    which field and why - not an "HTTP error". The name is resolved here by a stand-in resolver:
    the address guard that refuses it is the real one."""
    fake, path = portal
    name = "oauth.callbridge-test.example"
    real = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1", *args, **kwargs) if host == name else real(host, *args, **kwargs)

    path.write_text(path.read_text().replace(f"oauth_url: {fake.portal}", f"oauth_url: https://{name}"))
    assert callbridge("accounts", "apply", str(path)).exit_code == 0
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    refused = callbridge("bitrix24", "authorize", "cli-b24app", "--code", fake.authorize())
    assert refused.exit_code != 0
    assert "HTTP error" not in refused.output
    assert f"app.oauth_url (https://{name}): the address was refused" in refused.output, refused.output
    assert f"{name} resolves to 127.0.0.1, which is loopback" in refused.output
    assert fake.grants == []
