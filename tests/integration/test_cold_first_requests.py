"""What the first request of a cold function loads, for every sample event of every function behind
the HTTP API: each in a fresh interpreter, as a cold Lambda serves it, against the emulated cloud.
A request loads a heavy library only when it needs what the library does (bench/benchmark.py
measures what each costs a cold start): pydantic, phonenumbers and httpx (a peer address's syntax)
with the account's settings, phonenumbers with a number to parse, Powertools' logger with a log
line. A refusal of a JSON API before any settings are read (a wrong key, a clientId of an account
without a CRM; a well-formed body of POST /calls is read without pydantic), the static answers and a
known caller's contact answer load none of them. A check of what is loaded, not a timing: it cannot flake.

tests/unit/test_cold_imports.py holds the handlers' imports to none of them."""

from __future__ import annotations

import json

import pytest

from callbridge_local.template import load_template
from tests.cold import ROOT, run_fresh

HEAVY = ("pydantic", "phonenumbers", "aws_lambda_powertools", "httpx")
# The heavy libraries a sample's request may load; a sample not named here may load none.
MAY_LOAD: dict[str, set[str]] = {
    # A call is recorded: its number is parsed; the history line is logged.
    "CloudPbxFunction.event-incoming.json": {"phonenumbers"},
    "CloudPbxFunction.history.json": {"phonenumbers", "aws_lambda_powertools"},
    "HistoryFunction.outgoing-busy.json": {"phonenumbers", "aws_lambda_powertools"},
    "EventFunction.cancelled.json": {"phonenumbers"},
    # A trunk prefix only phonenumbers' metadata can read.
    "ContactFunction.known-caller-trunk-prefix.json": {"phonenumbers"},
    # The account's recordings password, from SSM with Powertools' parameters; its allowlist is read
    # from the stored config without parsing it (core/accounts.py recordings_allowed_ips).
    "RecordingsFunction.minicrm-not-fetched.json": {"aws_lambda_powertools"},
    "RecordingsFunction.wrong-password.json": {"aws_lambda_powertools"},
}

SCRIPT = """
import json, sys
handler = getattr(__import__(sys.argv[1]), sys.argv[2])
response = handler(json.load(sys.stdin), None)
loaded = sorted(name for name in {heavy!r} if name in sys.modules)
print("ANSWER " + json.dumps({{"status": response["statusCode"], "loaded": loaded}}))
"""


def _samples() -> list[tuple[str, str]]:
    """(event file, handler) of every sample event of every HTTP function."""
    found = []
    for spec in load_template(ROOT / "template.yaml").functions.values():
        if spec.http_events:
            found += [(path.name, spec.handler) for path in sorted((ROOT / "events").glob(f"{spec.logical_id}.*json"))]
    return found


SAMPLES = _samples()


def test_every_allowance_names_a_sample() -> None:
    assert set(MAY_LOAD) <= {name for name, _ in SAMPLES}


@pytest.mark.usefixtures("cloud")
@pytest.mark.parametrize(("sample", "handler"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_a_cold_first_request_loads_only_what_it_needs(sample: str, handler: str) -> None:
    module, _, function = handler.rpartition(".")
    done = run_fresh(
        ["-c", SCRIPT.format(heavy=HEAVY), module, function], (ROOT / "events" / sample).read_text(encoding="utf-8")
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("ANSWER "))
    answer = json.loads(line.removeprefix("ANSWER "))
    assert answer["status"] < 500, answer
    assert set(answer["loaded"]) <= MAY_LOAD.get(sample, set()), answer["loaded"]
