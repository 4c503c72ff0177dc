"""Pure rules of the recordings pipeline: backoff, object keys, Basic auth parsing, source allowlists,
signatures. No sockets, no AWS."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator

import pytest

from callbridge.features.recordings.layout import recording_key
from callbridge.features.recordings.playback import parse_basic, signature, source_allowed
from callbridge.features.recordings.worker import MAX_RETRY_DELAY_S, retry_delay
from callbridge.infra import settings


@pytest.fixture
def base_delay(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "ACCOUNTS_TABLE": "a",
        "CALLS_TABLE": "c",
        "CONTACTS_TABLE": "k",
        "SSM_PREFIX": "/p",
        "RECORDING_RETRY_BASE_SECONDS": "30",
    }.items():
        monkeypatch.setenv(name, value)
    settings.reset_settings()
    yield
    settings.reset_settings()


def test_backoff_doubles_per_try_is_capped_and_honours_retry_after(base_delay):
    assert [retry_delay(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert retry_delay(20) == MAX_RETRY_DELAY_S
    assert retry_delay(1, retry_after_s=90.2) == 91
    assert retry_delay(1, retry_after_s=86400) == MAX_RETRY_DELAY_S


def test_object_key_is_per_account_and_call_with_the_links_audio_extension():
    assert recording_key("demo", "B10D-1511", "https://pbx/rec/file.MP3?x=1") == "demo/B10D-1511/recording.mp3"
    assert recording_key("demo", "a/b c", "https://pbx/get_record?id=5") == "demo/a%2Fb%20c/recording.bin"
    assert recording_key("demo", "x", "https://pbx/file.exe") == "demo/x/recording.bin"


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_basic_auth_parsing():
    assert parse_basic(_basic("user:pa:ss")) == ("user", "pa:ss")
    assert parse_basic("basic " + base64.b64encode(b"u:p").decode()) == ("u", "p")
    assert parse_basic(None) is None
    assert parse_basic("Bearer abc") is None
    assert parse_basic("Basic !!!") is None
    assert parse_basic(_basic("no-colon")) is None


def test_source_allowlist():
    assert source_allowed("203.0.113.10", [])
    minicrm = ["195.228.75.210", "195.228.75.211"]
    assert source_allowed("195.228.75.211", minicrm)
    assert not source_allowed("127.0.0.1", minicrm)
    assert source_allowed("10.1.2.3", ["10.0.0.0/8"])
    assert not source_allowed("::1", ["10.0.0.0/8"])
    assert not source_allowed("not-an-ip", minicrm)
    assert not source_allowed(None, minicrm)


def test_signature_is_hmac_sha256_over_account_call_and_expiry():
    expected = hmac.new(b"key", b"demo|call-1|1700000000", hashlib.sha256).hexdigest()
    assert signature("key", "demo", "call-1", 1700000000) == expected
    assert signature("key", "demo", "call-1", 1700000001) != expected
    assert signature("key", "other", "call-1", 1700000000) != expected


def test_the_longest_signed_url_lifetime_is_the_templates_longest_retention():
    """verify_signature refuses an exp further ahead than any recording is kept: the bound must
    follow template.yaml's RecordingRetentionDays maximum."""
    from pathlib import Path

    from callbridge_local.template import load_template

    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    assert template.parameters["RecordingRetentionDays"].max_value == settings.RECORDING_RETENTION_MAX_DAYS
