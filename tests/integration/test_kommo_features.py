"""amoCRM beyond call delivery, against the strict fake account on 127.0.0.1 and an account applied
to the stack on moto: the ringing notification, the contact lookup for the PBX (through the routing
feature: its budget and cache), the account's users for the user mapping, callback tasks exactly
once under faults, and the OAuth tokens rotated once across concurrent Lambdas."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from callbridge import registry
from callbridge.core import accounts
from callbridge.core.config import AccountConfig
from callbridge.core.live import LiveEvent, message
from callbridge.crm.base import CallbackRequest, CallbackTasks, LiveCards, ResponsibleLookup, with_secrets
from callbridge.crm.kommo import oauth
from callbridge.crm.kommo.api import open_api
from callbridge.crm.kommo.settings import KommoSettings
from callbridge.crm.kommo.users import account_users
from callbridge.features import routing
from callbridge.features.admin import apply_account
from callbridge.infra import secrets
from tests.contract.conftest import T0, account_id, stack_env  # noqa: F401  (fixtures, by import)
from tests.fakes.crm_server import serve
from tests.fakes.kommo import CLIENT_ID, REDIRECT_URI, FakeKommo
from tests.support import trusting_fakes

pytestmark = pytest.mark.timeout(60)
TOKEN = "features-kommo-long-lived-token-01"
SECRET = "features-kommo-secret-key-0001"


class Applied:
    def __init__(self, fake: FakeKommo, url: str, account: str):
        self.fake, self.url, self.account = fake, url, account

    def apply(self, oauth_app: bool = False, **crm: Any) -> None:
        entry: dict[str, Any] = {"kind": "kommo", "base_url": self.url, "mode": "batch", **crm}
        if oauth_app:
            entry["app"] = {"client_id": CLIENT_ID, "client_secret": SECRET, "redirect_uri": REDIRECT_URI}
        else:
            entry["token"] = TOKEN
        data = {
            "account": self.account,
            "timezone": "Europe/Moscow",
            "phone_region": "RU",
            "pbx": {"kind": "cloudpbx", "crm_tokens": ["features-pbx-token-0001"]},
            "crms": [entry],
            "users": [
                {"pbx_user": "andy", "kommo_user_id": 7},
                {"pbx_user": "boris", "kommo_user_id": 9},
                {"pbx_user": "gone", "kommo_user_id": 99},
            ],
        }
        apply_account(AccountConfig.model_validate(trusting_fakes(data)))
        accounts.clear_account_cache()
        secrets.reset_secret_cache()

    def crm(self) -> KommoSettings:
        found = accounts.get_account(self.account).settings.crms[0]
        assert isinstance(found, KommoSettings)
        return found

    def filled(self) -> KommoSettings:
        filled = with_secrets(self.account, self.crm(), force=True)
        assert isinstance(filled, KommoSettings)
        return filled


@pytest.fixture
def applied(account_id: str) -> Iterator[Applied]:  # noqa: F811
    fake = FakeKommo(token=TOKEN, client_secret=SECRET)
    oauth.clear_cache()
    with serve(fake) as url:  # stopped on exit, whatever the test did
        yield Applied(fake, url, account_id)
    oauth.clear_cache()
    assert fake.errors == [], "the connector broke amoCRM's protocol"
    assert fake.throttled == 0


# -- the ringing notification ---------------------------------------------------------------------
def test_the_ringing_managers_get_amocrms_notification_and_nothing_after(applied: Applied) -> None:
    applied.apply()
    account = accounts.get_account(applied.account)
    cards = registry.crm_capability("kommo", LiveCards)
    assert cards is not None
    ringing = LiveEvent(stage="ringing", call_id="live-1", phone="+79165550123", users=("andy", "boris", "nobody"))
    assert cards.send_live(account, applied.crm(), message(applied.account, "kommo", ringing))
    assert applied.fake.events == [{"type": "phone_call", "phone_number": "+79165550123", "users": [7, 9]}]
    for stage in ("answered", "ended"):
        ended = LiveEvent(stage=stage, call_id="live-1", phone="+79165550123", users=("andy",))
        assert cards.send_live(account, applied.crm(), message(applied.account, "kommo", ended))
    withheld = LiveEvent(stage="ringing", call_id="live-2", phone="anonymous", users=("andy",))
    assert cards.send_live(account, applied.crm(), message(applied.account, "kommo", withheld))
    assert len(applied.fake.events) == 1  # the pop-up goes by itself; no number, no pop-up


# -- the lookup for the PBX -----------------------------------------------------------------------
def test_the_lookup_names_the_contact_and_its_responsible_mapped_to_a_pbx_user(applied: Applied) -> None:
    applied.apply()
    account = accounts.get_account(applied.account)
    applied.fake.add_contact("8 916 555-00-77", "Ivan Petrov", responsible=9)
    applied.fake.add_contact("+7 000 000-00-00", "Mr 9165550088 (a number in the name only)", responsible=7)
    lookup = registry.crm_capability("kommo", ResponsibleLookup)
    assert lookup is not None
    found = lookup.lookup_responsible(account, applied.crm(), "+79165550077", 2.0)
    assert (found.pbx_user, found.contact_name, found.manager_id) == ("boris", "Ivan Petrov", "9")
    assert lookup.lookup_responsible(account, applied.crm(), "+79165550088", 2.0).as_dict() == {}
    assert lookup.lookup_responsible(account, applied.crm(), "+79165550099", 2.0).as_dict() == {}


def test_the_pbx_gets_the_answer_within_its_budget_and_then_from_the_cache(applied: Applied) -> None:
    applied.apply()
    account = accounts.get_account(applied.account)
    applied.fake.add_contact("+79165550077", "Ivan Petrov", responsible=7)
    began = time.monotonic()
    assert routing.route(account, "+79165550077", None, began) == {"contact_name": "Ivan Petrov", "responsible": "andy"}
    assert routing.SERVED.get() == "crm"
    searches = applied.fake.requests.count(("GET", "/api/v4/contacts"))
    for _ in range(20):  # the cache is written after the answer, on the lookup's thread
        if routing._cached(applied.account, "+79165550077"):
            break
        time.sleep(0.05)
    assert routing.route(account, "+79165550077", None, time.monotonic())["responsible"] == "andy"
    assert routing.SERVED.get() == "cache" and applied.fake.requests.count(("GET", "/api/v4/contacts")) == searches


# -- users ---------------------------------------------------------------------------------------
def test_the_accounts_users_are_listed_with_their_mapping_and_stale_mappings_reported(applied: Applied) -> None:
    applied.apply()
    applied.fake.users[12] = "Clara"
    rows, stale = account_users(applied.account)
    assert [(r["id"], r["name"], r["pbx_user"]) for r in rows] == [("7", "Andy", "andy"), ("9", "Boris", "boris"),
                                                                   ("12", "Clara", None)]  # fmt: skip
    assert stale == ["gone"]


# -- callback tasks ------------------------------------------------------------------------------
def request(account: str, phone: str, *, retry: bool = False, only_unknown: bool = False) -> CallbackRequest:
    owners = [u for u in accounts.get_account(account).settings.users if u.pbx_user == "boris"]
    return CallbackRequest(marker="cb-0001", phone=phone, missed_at=T0, due_at=T0 + timedelta(minutes=30),
                           reason="no_answer", owners=owners, only_unknown=only_unknown, retry=retry)  # fmt: skip


def test_a_callback_task_is_a_call_task_on_the_contact_for_its_responsible_and_closes(applied: Applied) -> None:
    applied.apply(callbacks={"mode": "all"})
    account = accounts.get_account(applied.account)
    tasks = registry.crm_capability("kommo", CallbackTasks)
    assert tasks is not None
    contact = applied.fake.add_contact("+79165550077", "Ivan", responsible=7)
    opened = tasks.open_callback_task(account, applied.crm(), request(applied.account, "+79165550077"))
    assert opened.task_id is not None
    task = applied.fake.tasks[int(opened.task_id)]
    assert (task["task_type_id"], task["entity_type"], task["entity_id"], task["responsible_user_id"]) == (
        1, "contacts", contact, 7)  # fmt: skip
    assert task["complete_till"] == int((T0 + timedelta(minutes=30)).timestamp()) and "cb-0001" in task["text"]
    tasks.close_callback_task(account, applied.crm(), opened.task_id, "called back at 09:12")
    assert applied.fake.tasks[int(opened.task_id)]["is_completed"] is True
    assert applied.fake.tasks[int(opened.task_id)]["result"] == {"text": "called back at 09:12"}
    skipped = tasks.open_callback_task(
        account, applied.crm(), request(applied.account, "+79165550077", only_unknown=True)
    )
    assert skipped.task_id is None and "knows" in skipped.skipped


def test_a_task_whose_answer_was_lost_is_found_by_its_marker_not_made_twice(applied: Applied) -> None:
    applied.apply(callbacks={"mode": "all"})
    account = accounts.get_account(applied.account)
    tasks = registry.crm_capability("kommo", CallbackTasks)
    assert tasks is not None
    applied.fake.add_contact("+79165550077", "Ivan", responsible=7)
    applied.fake.fail_after_save["/api/v4/tasks"] = 1
    with pytest.raises(Exception, match="500"):
        tasks.open_callback_task(account, applied.crm(), request(applied.account, "+79165550077"))
    again = tasks.open_callback_task(account, applied.crm(), request(applied.account, "+79165550077", retry=True))
    assert again.task_id is not None and list(applied.fake.tasks) == [int(again.task_id)]


def test_an_unknown_callers_task_goes_on_his_incoming_lead(applied: Applied) -> None:
    applied.apply(callbacks={"mode": "unknown_numbers"})
    account = accounts.get_account(applied.account)
    tasks = registry.crm_capability("kommo", CallbackTasks)
    assert tasks is not None
    assert tasks.open_callback_task(account, applied.crm(), request(applied.account, "+79165550055")).skipped
    from callbridge.crm.kommo.calls import LEAD, caller_key
    from callbridge.store import crm_calls

    crm_calls.claim(applied.account, caller_key("+79165550055"), "kommo", {LEAD: "4242"}, int(time.time()))
    applied.fake.leads[4242] = {"id": 4242, "name": "Call from +79165550055", "status": "unsorted"}
    opened = tasks.open_callback_task(
        account, applied.crm(), request(applied.account, "+79165550055", only_unknown=True)
    )
    assert opened.task_id is not None
    task = applied.fake.tasks[int(opened.task_id)]
    assert (task["entity_type"], task["entity_id"], task["responsible_user_id"]) == ("leads", 4242, 9)


# -- OAuth ---------------------------------------------------------------------------------------
def test_oauth_tokens_are_rotated_once_across_concurrent_lambdas(
    applied: Applied, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    applied.apply(oauth_app=True)
    oauth.authorize(applied.account, applied.filled(), applied.fake.authorize())
    first = oauth.TokenStore(applied.account, applied.filled()).current()
    applied.fake.expire_access()
    # Four Lambdas with the same cached (now refused) access token, at once.
    answers: list[Any] = []
    errors: list[BaseException] = []

    def lambda_() -> None:
        api = open_api(applied.account, applied.filled())
        try:
            answers.append(api.request("GET", "/api/v4/account"))
        except BaseException as exc:  # reported below, not lost in a thread
            errors.append(exc)
        finally:
            api.close()

    threads = [threading.Thread(target=lambda_) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(answers) == 4
    assert applied.fake.refreshes == 1  # the refresh token rotated once, not four times
    stored = oauth.TokenStore(applied.account, applied.filled()).read()
    assert (
        stored is not None
        and stored.version == first.version + 1
        and stored.refresh_token in applied.fake.refresh_tokens
    )
    logged = caplog.text + repr(stored)
    assert SECRET not in logged and stored.access_token not in logged and stored.refresh_token not in logged
