"""Every PBX adapter of callbridge.registry.PBX against the same contract, through the Lambda
handlers of template.yaml (webhooks) or the scheduled poll, on moto: a wrong credential is refused as
documented and stores nothing, credentials rotate without a gap, a repeated webhook (or an overlapping
poll window) stores the call once, and the raw record is kept without any secret."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from callbridge import registry
from callbridge.core import accounts
from callbridge.core.config import AccountConfig, UserMapping
from callbridge.features import admin
from callbridge.infra import aws, secrets, settings
from callbridge.store import calls
from callbridge.store.keys import call_pk
from tests.contract.conftest import FakeServers, Logs
from tests.contract.harness import dynamodb_dump, leaks
from tests.contract.pbxs import NOT_A_WEBHOOK, PBXS, ROTATION_OVERLAP, PbxProfile, PbxRun, credentials
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(60)


def test_every_registered_pbx_has_a_profile() -> None:
    profiled = [p.kind for p in PBXS]
    assert len(profiled) == len(set(profiled)), "a PBX kind has two profiles"
    missing = sorted(set(registry.PBX) - set(profiled))
    assert not missing, f"PBX adapters without a contract profile (tests/contract/pbxs.py): {missing}"
    assert not set(profiled) - set(registry.PBX), "profiles of PBXs the registry does not name"


def test_each_profile_maps_its_users_with_the_adapters_own_user_fields() -> None:
    # An adapter reads a user's fields of its own system from its USER_FIELDS (callbridge.registry).
    for profile in PBXS:
        own = getattr(importlib.import_module(f"{registry.PBX[profile.kind]}.settings"), "USER_FIELDS", None)
        declared = set(UserMapping.model_fields) | set(own.model_fields if own else ())
        for user in profile.account.get("users", []):
            assert set(user) <= declared, f"{profile.kind}: {sorted(set(user) - declared)}"


@pytest.fixture(params=sorted(registry.PBX))
def profile(request: pytest.FixtureRequest) -> PbxProfile:
    """Every kind the registry names (not every profile): a kind without one fails every check."""
    found = {p.kind: p for p in PBXS}.get(request.param)
    if found is None:
        pytest.fail(f"PBX {request.param!r} has no contract profile: add one to tests/contract/pbxs.py")
    return found


class Pbx:
    def __init__(self, profile: PbxProfile, run: PbxRun):
        self.profile = profile
        self.run = run
        self.account = run.account
        fresh = credentials(f"{profile.kind}-{run.account}")
        self.new_credential = lambda: next(fresh)
        self.current = [self.new_credential()]
        self.ids = (profile.call_id(n) for n in range(1, 1000))

    def apply(self, credentials: list[str], *, from_elsewhere: bool = False) -> None:
        """Apply the account with `credentials` (current first). `from_elsewhere`: as the operator's
        CLI does from another machine - this process's warm caches are left as they are."""
        config = AccountConfig.model_validate(
            trusting_fakes(
                {
                    "account": self.account,
                    **self.profile.account,
                    "pbx": self.profile.settings(self.run.url, credentials),
                }
            )
        )
        if from_elsewhere:
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(admin, "clear_account_cache", lambda: None)
                admin.apply_account(config)
        else:
            admin.apply_account(config)
            accounts.clear_account_cache()
            secrets.reset_secret_cache()
        self.current = credentials

    def send(self, credential: str, call_id: str) -> Any:
        return self.profile.send(self.run, credential, call_id)

    def items(self, call_id: str | None = None) -> list[dict[str, Any]]:
        """The calls-table items of the account (of one call), by a scan: what was stored at all."""
        prefix = call_pk(self.account, call_id) if call_id else call_pk(self.account, "")
        client = aws.dynamodb()
        found: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": settings.get_settings().calls_table}
        while True:
            page = client.scan(**kwargs)
            found.extend(i for i in page["Items"] if i["pk"]["S"].startswith(prefix))
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def secrets(self, *more: str) -> list[str]:
        return [*self.current, self.profile.api_key, *more]


@pytest.fixture
def pbx(profile: PbxProfile, account_id: str, now: list[datetime], fake_servers: FakeServers) -> Iterator[Pbx]:
    fake = profile.fake(profile.api_key)
    stack = Pbx(profile, PbxRun(account_id, fake, fake_servers.put(profile.serve, fake), now))
    stack.apply(stack.current)
    yield stack
    assert getattr(fake, "errors", []) == [], "the adapter broke the PBX API's protocol"


def skip_unless_applies(profile: PbxProfile, check: str) -> None:
    if check in profile.skips:
        pytest.skip(profile.skips[check])


def known_gap(request: pytest.FixtureRequest, profile: PbxProfile, check: str) -> None:
    if check in profile.known_gaps:
        request.applymarker(pytest.mark.xfail(reason=profile.known_gaps[check], strict=True))


# -- the checks --------------------------------------------------------------------------------------
def test_a_wrong_credential_is_refused_as_documented_and_stores_nothing(pbx: Pbx, logs: Logs) -> None:
    wrong = pbx.new_credential()
    answer = pbx.send(wrong, next(pbx.ids))
    assert pbx.profile.refused(answer), answer
    assert pbx.items() == []
    assert not leaks(dynamodb_dump() + logs.text(), [wrong, *pbx.secrets()])


def test_an_unknown_account_is_answered_like_a_wrong_credential(pbx: Pbx) -> None:
    skip_unless_applies(pbx.profile, NOT_A_WEBHOOK)
    stranger = PbxRun("nobody-here", pbx.run.fake, pbx.run.url, pbx.run.now)
    assert pbx.profile.refused(pbx.profile.send(stranger, pbx.current[0], next(pbx.ids)))


def test_during_a_rotation_the_previous_and_the_current_credential_are_accepted(pbx: Pbx) -> None:
    skip_unless_applies(pbx.profile, ROTATION_OVERLAP)
    previous = pbx.current[0]
    current = pbx.new_credential()
    pbx.apply([current, previous])
    first, second, third = next(pbx.ids), next(pbx.ids), next(pbx.ids)
    assert pbx.profile.accepted(pbx.send(previous, first))
    assert pbx.profile.accepted(pbx.send(current, second))
    assert pbx.profile.refused(pbx.send(pbx.new_credential(), third))
    assert {i["call_id"]["S"] for i in pbx.items() if i["sk"]["S"] == "CALL"} == {first, second}
    pbx.apply([current])  # the rotation is over
    assert pbx.profile.refused(pbx.send(previous, third))
    assert pbx.profile.accepted(pbx.send(current, third))


def test_a_newly_applied_credential_is_accepted_at_once(pbx: Pbx, request: pytest.FixtureRequest) -> None:
    """By a warm function that cached the account (and its secrets) before the change."""
    known_gap(request, pbx.profile, "applied_at_once")
    old = pbx.current[0]
    assert pbx.profile.accepted(pbx.send(old, next(pbx.ids)))  # warms this process's caches
    new = pbx.new_credential()
    pbx.apply([new], from_elsewhere=True)
    assert pbx.profile.accepted(pbx.send(new, next(pbx.ids)))
    assert pbx.profile.refused(pbx.send(old, next(pbx.ids)))


def test_a_credential_refused_moments_before_it_was_applied_is_accepted_once_applied(
    pbx: Pbx, request: pytest.FixtureRequest
) -> None:
    """The usual rotation race: the PBX starts using the new credential a moment before the account
    is applied; it is refused then, and must be accepted as soon as the account is applied."""
    known_gap(request, pbx.profile, "refused_then_applied")
    assert pbx.profile.accepted(pbx.send(pbx.current[0], next(pbx.ids)))  # a warm function
    new = pbx.new_credential()
    call_id = next(pbx.ids)
    assert pbx.profile.refused(pbx.send(new, call_id))
    pbx.apply([new], from_elsewhere=True)
    assert pbx.profile.accepted(pbx.send(new, call_id))


def test_a_repeated_delivery_stores_the_call_once(pbx: Pbx) -> None:
    """A webhook the PBX sends again, or - for a polled PBX - a poll whose window overlaps the last."""
    call_id = next(pbx.ids)
    assert pbx.profile.accepted(pbx.send(pbx.current[0], call_id))
    first = pbx.items(call_id)
    call = calls.get_call(pbx.account, call_id)
    assert call is not None and call.get("final") is True
    assert pbx.profile.accepted(pbx.send(pbx.current[0], call_id))
    assert len(pbx.items(call_id)) == len(first)
    again = calls.get_call(pbx.account, call_id)
    assert {k: v for k, v in (again or {}).items() if k != "updated_at"} == {
        k: v for k, v in call.items() if k != "updated_at"
    }
    assert [i["call_id"]["S"] for i in pbx.items() if i["sk"]["S"] == "CALL"] == [call_id]


def test_the_raw_record_is_kept_without_any_secret(pbx: Pbx, logs: Logs) -> None:
    call_id = next(pbx.ids)
    assert pbx.profile.accepted(pbx.send(pbx.current[0], call_id))
    call = calls.get_call(pbx.account, call_id)
    assert call is not None
    raw = str(call.get(pbx.profile.raw_attribute) or "")
    assert call_id in raw, f"{pbx.profile.raw_attribute} does not hold the PBX's record: {raw!r}"
    stored = dynamodb_dump()
    assert pbx.account in stored
    assert not leaks(stored, pbx.secrets()), "a secret is stored in DynamoDB"
    assert not leaks(logs.text(), pbx.secrets()), "a secret is in a log line"
