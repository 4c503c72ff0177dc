"""Pure pieces of click-to-call, routing and registration: no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from callbridge.core.accounts import Account
from callbridge.core.config import UserMapping
from callbridge.crm.base import query_phone
from callbridge.crm.retailcrm import users as retailcrm_users
from callbridge.crm.retailcrm.managers import customer_name
from callbridge.crm.retailcrm.registration import module_payload
from callbridge.crm.retailcrm.settings import RetailCrmSettings
from callbridge.features.clicktocall import resolve_api_user
from callbridge.pbx.cloudpbx.client import pbx_phone
from callbridge.pbx.telediscount.adapter import outcome_refusal as _telediscount_refusal

USERS = [
    {"pbx_user": "andy", "extension": "100", "retailcrm_user_id": 1},
    {"pbx_user": "daria", "extension": "200", "retailcrm_user_id": 2, "retailcrm_code": "201"},
    {"pbx_user": "ops", "extension": "300"},
]


def account(**config: Any) -> Account:
    stored = {"account": "acme", "phone_region": "RU", "pbx": {"kind": "cloudpbx"}, "users": USERS, **config}
    return Account(id="acme", phone_region="RU", timezone="UTC", pbx_kind="cloudpbx", config=stored)


def find_user(
    account: Account,
    *,
    pbx_user: str | None = None,
    extension: str | None = None,
    crm_code: str | None = None,
    retailcrm_user_id: str | int | None = None,
) -> dict[str, Any] | None:
    """The product's lookups of a mapped user: by PBX user or extension (the calls API), by the
    retailCRM manager's code, then userId (retailCRM's requests)."""
    if pbx_user or extension:
        found = resolve_api_user(account, pbx_user, extension)
    elif crm_code or retailcrm_user_id not in (None, ""):
        found = retailcrm_users.find_user(account.settings.users, crm_code, retailcrm_user_id)
    else:
        found = None
    return found.model_dump() if found else None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" 79121234567", "+79121234567"), ("+79121234567", "+79121234567"), ("89121234567", "89121234567"), (None, "")],
)
def test_query_phone_restores_a_decoded_plus(raw, expected):
    assert query_phone(raw) == expected


def test_pbx_phone_is_digits_only():
    assert pbx_phone("+79101234567") == "79101234567"


def test_find_user_by_code_then_user_id():
    found = account()
    assert find_user(found, crm_code="100")["pbx_user"] == "andy"
    assert find_user(found, crm_code="201")["pbx_user"] == "daria"  # retailcrm_code wins over extension
    assert find_user(found, crm_code="200") is None
    assert find_user(found, crm_code="999", retailcrm_user_id="2")["pbx_user"] == "daria"
    assert find_user(found, retailcrm_user_id=1)["pbx_user"] == "andy"
    assert find_user(found, extension="300")["pbx_user"] == "ops"
    assert find_user(found, pbx_user="nobody") is None
    assert find_user(found) is None


def test_customer_name():
    assert customer_name({"firstName": "Иван", "lastName": "Петров", "patronymic": "Ильич"}) == "Иван Ильич Петров"
    assert customer_name({"nickName": "ООО Ромашка"}) == "ООО Ромашка"
    assert customer_name({}) == ""


def test_telediscount_refusals():
    assert _telediscount_refusal({"result": "ok"}) is None
    assert _telediscount_refusal({}) is None
    assert _telediscount_refusal({"error": "bad num_a"}) == "bad num_a"
    assert _telediscount_refusal({"status": "error", "message": "no money"}) == "no money"
    assert _telediscount_refusal({"success": False}) == "error"


def test_module_payload_has_client_id_in_both_layouts_and_only_mapped_codes():
    crm = RetailCrmSettings.model_validate(
        {"module_code": "my-telephony", "external_phones": [{"site_code": "shop1", "external_phone": "+7-499"}],
         "base_url": "https://acme.retailcrm.ru", "api_key": "api-key-00000001", "client_id": "client-id-0000000001"}
    )  # fmt: skip
    users = [UserMapping.model_validate(u) for u in USERS]
    payload = module_payload("acme", users, crm, "client-id-0000000001", "https://api.example.com/")
    telephony = payload["integrations"]["telephony"]
    assert payload["code"] == "my-telephony" and payload["clientId"] == telephony["clientId"] == "client-id-0000000001"
    assert telephony["makeCallUrl"] == "https://api.example.com/v1/acme/retailcrm/make-call"
    assert telephony["changeUserStatusUrl"] == "https://api.example.com/v1/acme/retailcrm/user-status"
    assert telephony["additionalCodes"] == [{"userId": "1", "code": "100"}, {"userId": "2", "code": "201"}]
    assert telephony["externalPhones"] == [{"siteCode": "shop1", "externalPhone": "+7-499"}]
    assert telephony["allowEdit"] is False and telephony["inputEventSupported"] is True


def test_live_events_map_to_retailcrm_cards():
    from callbridge.core.live import LiveEvent
    from callbridge.crm.retailcrm.cards import build

    users = [UserMapping.model_validate(u) for u in USERS]
    crm = RetailCrmSettings.model_validate(
        {"base_url": "https://acme.retailcrm.ru", "api_key": "api-key-00000001", "client_id": "client-id-0000000001",
         "site": "shop1"}
    )  # fmt: skip
    ringing = LiveEvent("ringing", "c1", "+79101234567", ("daria",), "in", "+74951112233")
    assert build(users, crm, ringing) == {
        "phone": "+79101234567", "type": "in", "codes": ["201"], "callExternalId": "c1", "userIds": [2],
        "externalPhone": "+74951112233", "site": "shop1",
    }  # fmt: skip
    ended = LiveEvent("ended", "c1", "+79101234567", ("ops",), answered=False)
    assert build(users, crm, ended) == {
        "phone": "+79101234567", "type": "hangup", "codes": ["300"], "callExternalId": "c1", "hangupStatus": "cancel",
        "site": "shop1",
    }  # fmt: skip
    assert build(users, crm, LiveEvent("answered", "c1", "+79101234567", ("andy",), "in")) is None
    assert build(users, crm, LiveEvent("ringing", "c1", "+79101234567", ("ghost",), "in")) is None
    assert LiveEvent.from_dict(ringing.as_dict()) == ringing


CALL_BODIES: list[Any] = [
    {"user": "andy", "phone": "+79101234567"},
    {"extension": "100", "phone": "89101234567", "clid": "+74950000000"},
    {"user": "andy", "extension": "100", "phone": "1", "clid": ""},
    {"user": "a" * 256, "phone": "9" * 64, "clid": "7" * 64},
    {"user": "andy", "extension": None, "phone": "1", "clid": None},
    {"user": "Андрей 🙂", "phone": "+7 (910) 123-45-67"},
    # Each refused by the model: the plain check must leave them to it.
    {"user": "a" * 257, "phone": "1"},
    {"extension": "1" * 33, "phone": "1"},
    {"user": "andy", "phone": "9" * 65},
    {"user": "andy", "phone": "1", "clid": "7" * 65},
    {"user": "", "phone": "1"},
    {"extension": "", "phone": "1"},
    {"user": "andy", "phone": ""},
    {"user": "andy"},
    {"phone": "1"},
    {"user": None, "extension": None, "phone": "1"},
    {"user": "andy", "phone": None},
    {"user": "andy", "phone": 79101234567},
    {"user": 1, "phone": "1"},
    {"user": True, "phone": "1"},
    {"user": ["andy"], "phone": "1"},
    {"user": "andy", "phone": "1", "extra": "x"},
    {"user": "\ud800", "phone": "1"},
    {"user": "andy", "phone": "1\udfff"},
    [],
    [{"user": "andy", "phone": "1"}],
    "andy",
    None,
    1,
]


@pytest.mark.parametrize("body", CALL_BODIES, ids=range(len(CALL_BODIES)))
def test_the_plain_check_of_post_calls_vouches_only_for_what_the_model_accepts(body: Any) -> None:
    from pydantic import ValidationError

    from callbridge.edge.call_request import CallRequestModel
    from callbridge.edge.clicktocall import CallRequest, plainly_valid

    try:
        model = CallRequestModel.model_validate(body)
    except ValidationError:
        accepted = None
    else:
        accepted = CallRequest(model.user, model.extension, model.phone, model.clid)
    # Every body the model accepts here is one the plain check reads too (no pydantic then), and
    # the same way; every other it leaves to the model, which says what is wrong.
    assert plainly_valid(body) == accepted
