"""The contact path in a fresh interpreter, as a cold Lambda runs it: a known caller, in the form the
PBX sends (docs/protocols/cloudpbx.md: 79101234567), is answered without loading the libraries the
rest of CallBridge needs, and after one DynamoDB round trip (the account and the caller's entry
read together), as the floor's one GetItem. bench/benchmark.py measures what that is worth; this
keeps it so."""

from __future__ import annotations

import json

import pytest

from tests.cold import run_fresh
from tests.support import DEMO_TOKEN, form, http_event, seed_contact

# Each is tens of milliseconds of a cold start that a ringing phone waits for.
HEAVY = ("phonenumbers", "pydantic", "aws_lambda_powertools", "httpx")

# Every request botocore sends is recorded by its operation (X-Amz-Target), per handled event.
SCRIPT = """
import json, sys
import botocore.endpoint
sent = []
send = botocore.endpoint.Endpoint._send
def recorded(self, request):
    sent.append(request.headers.get("X-Amz-Target", b"").decode().rpartition(".")[2])
    return send(self, request)
botocore.endpoint.Endpoint._send = recorded
function = __import__(sys.argv[1])
answers = []
for event in json.load(sys.stdin):
    sent.clear()
    response = function.handler(event, None)
    loaded = [name for name in {heavy!r} if name in sys.modules]
    answers.append({{"status": response["statusCode"], "body": response["body"], "loaded": loaded, "sent": list(sent)}})
print("ANSWERS " + json.dumps(answers))
"""

CONTACT_PATH = "/v1/demo/cloudpbx/contact"


def contact_event(phone: str, *, token: str = DEMO_TOKEN, account: str = "demo") -> dict[str, object]:
    path = CONTACT_PATH.replace("demo", account)
    return http_event(path, form(**seed_contact(phone=phone, crm_token=token)), account=account)


def cold(events: list[dict[str, object]], module: str = "contact") -> list[dict[str, object]]:
    """The answers of one fresh interpreter (a cold Lambda) handling `events` in turn."""
    done = run_fresh(["-c", SCRIPT.format(heavy=HEAVY), module], json.dumps(events))
    line = next(x for x in done.stdout.splitlines() if x.startswith("ANSWERS "))
    answers: list[dict[str, object]] = json.loads(line.removeprefix("ANSWERS "))
    return answers


def cold_contacts(phones: list[str]) -> list[dict[str, object]]:
    return cold([contact_event(phone) for phone in phones])


def body(answer: dict[str, object]) -> tuple[object, object]:
    return answer["status"], json.loads(str(answer["body"]))


KNOWN = {"contact_name": "Manager of Horns and Hooves LLC", "responsible": "andy"}


@pytest.mark.usefixtures("cloud")
def test_a_known_caller_in_the_pbx_format_is_answered_without_the_heavy_libraries():
    first, national, again = cold_contacts(["79101234567", "89101234567", "79101234567"])
    assert body(first) == (200, KNOWN)
    assert first["loaded"] == []
    # A trunk prefix only the metadata can read: phonenumbers loads then, and the answer is the same.
    assert body(national) == (200, KNOWN)
    assert national["loaded"] == ["phonenumbers"]
    assert body(again) == (200, KNOWN)


@pytest.mark.usefixtures("cloud")
@pytest.mark.parametrize("phone", ["79101234567", "+79101234567", "+7 (910) 123-45-67"])
def test_a_cold_start_reads_the_account_and_a_known_caller_in_one_round_trip(phone: str):
    first, again = cold_contacts([phone, phone])
    assert body(first) == (200, KNOWN)
    assert first["sent"] == ["BatchGetItem"]
    # Warm, the account is cached: the caller's entry alone.
    assert body(again) == (200, KNOWN)
    assert again["sent"] == ["GetItem"]


@pytest.mark.usefixtures("cloud")
def test_the_single_address_answers_contact_in_one_round_trip_too():
    event = http_event("/v1/demo/cloudpbx", form(**seed_contact()))
    (answer,) = cold([event], module="cloudpbx")
    assert body(answer) == (200, KNOWN)
    assert answer["sent"] == ["BatchGetItem"]


@pytest.mark.usefixtures("cloud")
def test_a_national_number_still_resolves_with_a_read_of_its_own():
    # The key read with the account (+89101234567) is not the caller's: the number is parsed with
    # the account's region and its own key read after.
    (national,) = cold_contacts(["89101234567"])
    assert body(national) == (200, KNOWN)
    assert national["sent"] == ["BatchGetItem", "GetItem"]


@pytest.mark.usefixtures("cloud")
def test_an_unknown_caller_is_parsed_before_the_answer_is_given():
    (unknown,) = cold_contacts(["79990000000"])
    assert body(unknown) == (200, {})
    assert unknown["loaded"] == ["phonenumbers"]
    # Parsed, the number is the key already read: nothing more to read.
    assert unknown["sent"] == ["BatchGetItem"]


@pytest.mark.usefixtures("cloud")
def test_a_wrong_token_and_an_unknown_account_are_refused_after_the_same_single_read():
    (wrong,) = cold([contact_event("79101234567", token="not-the-token-0001")])
    (missing,) = cold([contact_event("79101234567", account="nosuch")])
    assert body(wrong) == body(missing) == (401, {"error": "Invalid token"})
    assert wrong["sent"] == missing["sent"] == ["BatchGetItem"]


@pytest.mark.usefixtures("cloud")
@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"phone": None}, 400),  # the field must be sent
        ({"phone": "7" * 65}, 400),  # longer than a number
        ({"phone": "+7 910 123-45-67 ext. 12"}, 200),  # an extension: only phonenumbers reads it
        ({"phone": "+79101234567\x00"}, 400),
        ({"phone": ""}, 200),  # a withheld caller id
    ],
)
def test_bad_numbers_get_the_answers_they_got_before(fields: dict[str, object], status: int):
    (answer,) = cold([http_event(CONTACT_PATH, form(**seed_contact(**fields)))])
    assert answer["status"] == status
