"""`callbridge accounts apply` and `callbridge kommo authorize|users` for an amoCRM integration with
OAuth, against the local runtime and the fake account (with its token endpoint) on 127.0.0.1: the
secret key goes to SSM, the first tokens come from the code, the users are read with them (after
one refresh), the mappings naming nobody are reported, and no token reaches the output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import crm_server
from tests.fakes.kommo import CLIENT_ID, REDIRECT_URI, FakeKommo
from tests.support import trusting_fakes_yaml

SECRET = "cli-kommo-secret-key-000001"
ACCOUNT = """\
account: cli-kommo
phone_region: RU
pbx:
  kind: cloudpbx
  crm_tokens: [cli-kommo-crm-token-01]
crms:
  - kind: kommo
    base_url: {url}
    app:
      client_id: {client_id}
      client_secret: {secret}
      redirect_uri: {redirect}
users:
  - {{pbx_user: andy, extension: "101", kommo_user_id: 7}}
  - {{pbx_user: gone, extension: "300", kommo_user_id: 30}}
"""


@pytest.fixture
def amo(tmp_path: Path) -> Iterator[tuple[FakeKommo, Path]]:
    from callbridge.crm.kommo import oauth

    fake = FakeKommo(token="cli-unused-long-lived-token", client_secret=SECRET)
    oauth.clear_cache()
    try:
        with crm_server.serve(fake) as url:
            path = tmp_path / "cli-kommo.yaml"
            text = ACCOUNT.format(url=url, client_id=CLIENT_ID, secret=SECRET, redirect=REDIRECT_URI)
            path.write_text(trusting_fakes_yaml(text))
            yield fake, path
    finally:
        oauth.clear_cache()
    assert fake.errors == [] and fake.throttled == 0


def test_authorize_then_users_as_an_integration(callbridge, amo):
    fake, path = amo
    applied = callbridge("accounts", "apply", str(path))
    assert applied.exit_code == 0, applied.output
    assert "callbridge kommo authorize cli-kommo --crm kommo" in applied.output
    assert SECRET not in applied.output

    before = callbridge("kommo", "users", "cli-kommo")
    assert before.exit_code != 0 and "callbridge kommo authorize" in before.output  # no tokens yet

    redirected = f"{REDIRECT_URI}?code={fake.authorize()}&referer=fake.amocrm.ru&client_id={CLIENT_ID}"
    done = callbridge("kommo", "authorize", "cli-kommo", input=redirected + "\n")
    assert done.exit_code == 0, done.output
    assert f"/oauth?client_id={CLIENT_ID}" in done.output and "authorized (tokens version 1)" in done.output

    fake.expire_access()  # a day later: the users are read after one refresh
    listed = callbridge("kommo", "users", "cli-kommo")
    assert listed.exit_code == 0, listed.output
    assert "pbx andy" in listed.output and "no PBX user is mapped to: 9" in listed.output
    assert "mappings naming nobody in amoCRM: gone" in listed.output
    assert fake.refreshes == 1
    for text in (done.output, listed.output):
        assert not any(token in text for token in [*fake.access_tokens, *fake.refresh_tokens, SECRET])
