"""The contact path in a fresh interpreter, as a cold Lambda runs it: a known caller, in the form the
PBX sends (docs/protocols/cloudpbx.md: 79101234567), is answered without loading the libraries the
rest of CallBridge needs. bench/benchmark.py measures what that is worth; this keeps it so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import form, http_event, seed_contact

ROOT = Path(__file__).resolve().parents[2]
HANDLER_PATHS = [ROOT / "layers" / "common" / "python", ROOT / "functions"]
# Each is tens of milliseconds of a cold start that a ringing phone waits for.
HEAVY = ("phonenumbers", "pydantic", "aws_lambda_powertools", "httpx")

SCRIPT = """
import json, sys
import contact
answers = []
for event in json.load(sys.stdin):
    response = contact.handler(event, None)
    loaded = [name for name in {heavy!r} if name in sys.modules]
    answers.append({{"status": response["statusCode"], "body": response["body"], "loaded": loaded}})
print("ANSWERS " + json.dumps(answers))
"""


def cold_contacts(phones: list[str]) -> list[dict[str, object]]:
    events = [http_event("/v1/demo/cloudpbx/contact", form(**seed_contact(phone=phone))) for phone in phones]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in HANDLER_PATHS)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(heavy=HEAVY)],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("ANSWERS "))
    answers: list[dict[str, object]] = json.loads(line.removeprefix("ANSWERS "))
    return answers


KNOWN = {"contact_name": "Manager of Horns and Hooves LLC", "responsible": "andy"}


@pytest.mark.usefixtures("cloud")
def test_a_known_caller_in_the_pbx_format_is_answered_without_the_heavy_libraries():
    first, national, again = cold_contacts(["79101234567", "89101234567", "79101234567"])
    assert (first["status"], json.loads(str(first["body"]))) == (200, KNOWN)
    assert first["loaded"] == []
    # A trunk prefix only the metadata can read: phonenumbers loads then, and the answer is the same.
    assert (national["status"], json.loads(str(national["body"]))) == (200, KNOWN)
    assert national["loaded"] == ["phonenumbers"]
    assert json.loads(str(again["body"])) == KNOWN


@pytest.mark.usefixtures("cloud")
def test_an_unknown_caller_is_parsed_before_the_answer_is_given():
    (unknown,) = cold_contacts(["79990000000"])
    assert (unknown["status"], json.loads(str(unknown["body"]))) == (200, {})
    assert unknown["loaded"] == ["phonenumbers"]
