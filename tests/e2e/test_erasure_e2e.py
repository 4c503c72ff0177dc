"""A data-subject request end to end: calls with recordings sent over HTTP to the local runtime, the
recordings fetched by its worker, then `callbridge recordings delete` run in-process against the
same moto, and every table and every object read back. Also: where a recording of an account with a
retention tier lands, and that the bucket's lifecycle deletes it after that many days.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from boto3.dynamodb.types import TypeDeserializer
from click.testing import CliRunner, Result

from callbridge_cli.main import cli
from callbridge_local.testing import LocalBridge, running_bridge
from tests.cli.conftest import forget_core_caches
from tests.integration.recording_server import RecordingServer, Reply
from tests.recording_lifecycle import fate, lifecycle_rules
from tests.support import form, seed_history

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

TOKEN = "e2e-erasure-token-000001"
USER, PASSWORD = "minicrm-dsr", "dsr-recordings-pass-0001"
# The caller who asks to be forgotten, in every form a store may hold: E.164, the digits the Cloud
# PBX sends, the Russian trunk form and the national number alone.
SUBJECT_FORMS = ("+79101234567", "79101234567", "89101234567", "9101234567")
OTHER = "79161234567"
CRM_PORT = 9  # nothing listens: the batch CRM's deliveries stay due (no drain runs in the test)

ACCOUNT = """\
account: {name}
phone_region: RU
pbx: {{kind: cloudpbx, crm_tokens: [{token}]}}
users:
  - {{pbx_user: andy, extension: "101"}}
crms:
  - {{kind: minicrm, base_url: "http://127.0.0.1:{crm}", api_key: dsr-minicrm-key-0001, mode: batch,
      default_user_extension: "900"}}
contacts:
  - {{name: Ivan Subject, phones: ["8 (910) 123-45-67", "+7 495 765-43-21"], responsible: andy}}
  - {{name: Olga Other, phones: ["+7 916 123-45-67"], responsible: andy}}
recordings:
{retention}  basic_auth: {{username: {user}, password: {password}}}
  allow_hosts: ["127.0.0.1:{files}"]   # the test's file server (that port only): never on AWS
trusted_hosts: ["127.0.0.1:{crm}"]
"""


@dataclass
class World:
    bridge: LocalBridge
    files: RecordingServer
    http: httpx.Client

    def history(self, account: str, call_id: str, phone: str, *, note: str | None = None) -> None:
        body = form(cmd="event", type="INCOMING", phone=phone, user="andy", crm_token=TOKEN, callid=call_id)
        self.post(account, body)
        link = self.files.route(
            f"/{account}/{call_id}.mp3", Reply(body=audio(call_id), headers={"Content-Type": "audio/mpeg"})
        )
        self.post(account, form(**seed_history(callid=call_id, phone=phone, link=link, crm_token=TOKEN, comment=note)))

    def post(self, account: str, body: str) -> None:
        headers = {"content-type": "application/x-www-form-urlencoded"}
        response = self.http.post(f"/v1/{account}/cloudpbx", content=body, headers=headers)
        assert response.status_code == 200, response.text

    def drain(self) -> None:
        response = self.http.post("/_local/queues/drain", params={"timeout": "30"})
        assert response.status_code == 200, response.text

    def callbridge(self, *args: str) -> Result:
        """The CLI in-process against this runtime; the environment it sets for the core is undone."""
        saved = dict(os.environ)
        try:
            return CliRunner().invoke(cli, ["--local", self.bridge.base_url, *args], catch_exceptions=False)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            forget_core_caches()

    def playback(self, account: str, call_id: str) -> int:
        response = self.http.get(f"/v1/{account}/recordings", params={"Rec": call_id}, auth=(USER, PASSWORD))
        return response.status_code

    def call(self, account: str, call_id: str) -> dict[str, Any]:
        return self.item(self.bridge.env["CALLS_TABLE"], f"CALL#{account}#{call_id}", "CALL")

    def item(self, table: str, pk: str, sk: str) -> dict[str, Any]:
        found = self.bridge.client("dynamodb").get_item(
            TableName=table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        )
        return plain(found.get("Item") or {})


def audio(call_id: str) -> bytes:
    return random.Random(call_id).randbytes(20_000)


def plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: TypeDeserializer().deserialize(v) for k, v in item.items()}


def everything(bridge: LocalBridge) -> tuple[dict[str, dict[str, Any]], dict[str, bytes]]:
    """Every item of every table (by table, item key) and every object of every bucket (by bucket/key)."""
    dynamodb, s3 = bridge.client("dynamodb"), bridge.client("s3")
    items: dict[str, dict[str, Any]] = {}
    for table in dynamodb.list_tables()["TableNames"]:
        for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            for raw in page["Items"]:
                item = plain(raw)
                key = "|".join(str(item.get(k, "")) for k in ("pk", "sk", "account", "phone"))
                items[f"{table}|{key}"] = item
    objects: dict[str, bytes] = {}
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()
                objects[f"{bucket['Name']}/{obj['Key']}"] = body
    return items, objects


def owner(key: str, item: dict[str, Any]) -> str:
    """The account of an item of any table: its `account` attribute, else the one in its pk."""
    pk = str(item.get("pk") or "")
    return str(item.get("account") or (pk.split("#")[1] if "#" in pk else pk.removeprefix("ACCOUNT#")))


def holds_subject(value: Any) -> bool:
    text = value.decode("latin-1") if isinstance(value, bytes) else json.dumps(value, default=str, ensure_ascii=False)
    # Also as a person writes it ("8 (910) 123-45-67"): the separators taken out.
    bare = text.translate({ord(c): None for c in " -().\u00a0"})
    return any(form_ in text or form_ in bare for form_ in SUBJECT_FORMS)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    directory: Path = tmp_path_factory.mktemp("accounts")
    files = RecordingServer().start()
    try:
        for name, retention in (("dsr", ""), ("twin", ""), ("tier", "  retention_days: 730\n")):
            text = ACCOUNT.format(
                name=name,
                token=TOKEN,
                crm=CRM_PORT,
                user=USER,
                password=PASSWORD,
                files=files.port,
                retention=retention,
            )
            (directory / f"{name}.yaml").write_text(text, encoding="utf-8")
        with (
            running_bridge(directory, params={"RecordingRetryBaseSeconds": "0"}) as bridge,
            httpx.Client(base_url=bridge.base_url, timeout=30) as http,
        ):
            yield World(bridge, files, http)
    finally:
        files.stop()


@pytest.fixture(scope="module")
def stored(world: World) -> World:
    """Two calls of the subject (as the PBX sends his number, and in the trunk form), two of another
    number (one with a note naming the subject), the subject's call in another account; the traces
    other features leave of a number, written as their store modules write them."""
    world.history("dsr", "DSR-1", "79101234567")
    world.history("dsr", "DSR-2", "89101234567")
    world.history("dsr", "OTHER-1", OTHER, note="asked us to call 8 910 123-45-67 back")
    world.history("dsr", "OTHER-2", OTHER)
    world.history("twin", "TWIN-1", "79101234567")
    world.history("tier", "TIER-1", OTHER)
    world.drain()
    calls, routing = world.bridge.env["CALLS_TABLE"], world.bridge.env["ROUTING_CACHE_TABLE"]
    dynamodb = world.bridge.client("dynamodb")
    subject = "+79101234567"
    for item in (
        {"pk": f"CBK#dsr#minicrm#{subject}", "sk": "HEAD", "current": "T#2026-12-07T10:00:00Z#DSR-1"},
        {
            "pk": f"CBK#dsr#minicrm#{subject}",
            "sk": "T#2026-12-07T10:00:00Z#DSR-1",
            "phone": subject,
            "calls": {"DSR-1"},
        },
        {"pk": f"CLICK#dsr#andy#{subject}", "sk": "PENDING", "placeholder": "click-1"},
        {"pk": "CALL#dsr#DSR-1", "sk": "CRMCALL#minicrm", "params": {"PHONE_NUMBER": "79101234567"}},
        {"pk": "CALL#dsr#OTHER-1", "sk": "CRMCALL#minicrm", "params": {"PHONE_NUMBER": OTHER}},
    ):
        dynamodb.put_item(TableName=calls, Item={k: _typed(v) for k, v in item.items()})
    for phone in (subject, "+" + OTHER):
        entry = {"account": "dsr", "phone": phone, "responsible": "andy", "expires_at": 4102444800}
        dynamodb.put_item(TableName=routing, Item={k: _typed(v) for k, v in entry.items()})
    for call_id in ("DSR-1", "DSR-2", "OTHER-1", "OTHER-2"):
        assert world.call("dsr", call_id)["recording_state"] == "stored", call_id
    return world


def _typed(value: Any) -> dict[str, Any]:
    if isinstance(value, set):
        return {"SS": sorted(value)}
    if isinstance(value, dict):
        return {"M": {k: _typed(v) for k, v in value.items()}}
    if isinstance(value, int):
        return {"N": str(value)}
    return {"S": value}


def test_a_recording_is_stored_where_the_lifecycle_deletes_it_after_the_accounts_retention(stored):
    rules = lifecycle_rules()
    tier = stored.call("tier", "TIER-1")["recording"]["key"]
    assert tier.startswith("_retention/730d/tier/")
    assert fate(tier, rules).expires_after == 730
    plain_key = stored.call("dsr", "OTHER-2")["recording"]["key"]
    assert plain_key == "dsr/OTHER-2/recording.mp3"  # no retention_days: the layout of old
    assert fate(plain_key, rules).expires_after == 365  # RecordingRetentionDays
    assert stored.playback("tier", "TIER-1") == 302  # every layout plays back


def test_a_dry_run_counts_and_changes_nothing(stored):
    before = everything(stored.bridge)
    result = stored.callbridge(
        "recordings", "delete", "-a", "dsr", "--number", "8 (910) 123-45-67", "--dry-run", "--json"
    )
    assert result.exit_code == 0, result.output
    assert everything(stored.bridge) == before
    report = json.loads(result.stdout)
    assert (report["dry_run"], report["calls"], report["recordings"]) == (True, 2, 2)


def test_erasing_a_number_leaves_it_nowhere_and_touches_nothing_else(stored):
    items_before, objects_before = everything(stored.bridge)
    result = stored.callbridge("recordings", "delete", "-a", "dsr", "--number", "+7 (910) 123 45-67", "--yes")
    assert result.exit_code == 0, result.output
    assert "calls anonymised" in result.stdout and "delete the caller's calls and contact in each CRM" in result.output
    assert not holds_subject(result.output)  # the CLI's log line and summary: counts only

    items, objects = everything(stored.bridge)
    # The number and the recordings of its calls: nowhere but in the other accounts, which are unchanged.
    holding = {key for key, item in items.items() if holds_subject(item)}
    others = {key for key, item in items_before.items() if owner(key, item) in ("twin", "tier")}
    assert holding and holding <= others
    assert {key: items[key] for key in others} == {key: items_before[key] for key in others}
    assert not [key for key, body in objects.items() if holds_subject(key) or body in (audio("DSR-1"), audio("DSR-2"))]
    assert sorted(key.rsplit("/", 2)[-2] for key in objects) == ["OTHER-1", "OTHER-2", "TIER-1", "TWIN-1"]
    assert objects == {key: body for key, body in objects_before.items() if key in objects}  # byte for byte

    # The other number's calls: as they were, but the note that named the subject.
    for key, item in items_before.items():
        if "#dsr#OTHER-" in key:
            expected = {k: v for k, v in item.items() if not holds_subject(v)}
            assert items[key] == expected, key
    assert "history_raw" not in stored.call("dsr", "OTHER-1") and stored.call("dsr", "OTHER-1")["phone"] == "+" + OTHER
    for call_id in ("OTHER-1", "OTHER-2"):
        assert stored.playback("dsr", call_id) == 302

    # The subject's calls: kept for the figures, without his number and recording; never sent again.
    for call_id in ("DSR-1", "DSR-2"):
        call = stored.call("dsr", call_id)
        assert call["phone"] == "erased" and {"erased", "no_number"} <= call["flags"]
        assert call["recording_state"] == "erased" and "recording" not in call and "recording_url" not in call
        assert call["duration"] == 124 and call["user"] == "andy"
        delivery = stored.item(stored.bridge.env["CALLS_TABLE"], f"CALL#dsr#{call_id}", "DLV#minicrm")
        assert delivery["state"] == "not_applicable" and "dlv_pk" not in delivery
        assert stored.playback("dsr", call_id) == 404
    # The subject's contact is gone; the contact's other phone stays, without his number.
    contacts = {k: v for k, v in items.items() if v.get("account") == "dsr" and "name" in v}
    assert sorted(v["phones"] for v in contacts.values()) == [["+74957654321"], ["+79161234567"]]


def test_erasing_one_call_deletes_its_recording_and_leaves_the_numbers_other_calls(stored):
    result = stored.callbridge("recordings", "delete", "-a", "dsr", "--call", "OTHER-2", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["recordings"] == 1
    assert stored.playback("dsr", "OTHER-2") == 404 and stored.call("dsr", "OTHER-2")["phone"] == "erased"
    assert stored.playback("dsr", "OTHER-1") == 302 and stored.call("dsr", "OTHER-1")["phone"] == "+" + OTHER


def test_bad_requests_are_refused_with_a_clear_error(stored):
    for args, message in (
        (["--number", "anonymous"], "not a phone number in region RU"),
        (["--call", "NO-SUCH-CALL"], "no call 'NO-SUCH-CALL' in account dsr"),
        ([], "give either --number or --call"),
        (["--number", "+79101234567", "--call", "DSR-1"], "give either --number or --call"),
    ):
        result = stored.callbridge("recordings", "delete", "-a", "dsr", "--yes", *args)
        assert result.exit_code in (1, 2) and message in result.output, (args, result.output)
