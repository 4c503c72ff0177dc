"""Applying an account file refuses what the connection guard would refuse later (docs/accounts.md,
`trusted_hosts`): an IPv4 address in a shorthand spelling the resolver reads as an address
(`127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`), with the field named, and the instance
metadata address in `trusted_hosts`, whatever its port."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from callbridge.core.config import AccountConfig


def config(base_url: str, trusted: list[str] | None = None) -> dict[str, Any]:
    return {
        "account": "shorthand",
        "timezone": "Europe/Moscow",
        "phone_region": "RU",
        "pbx": {"kind": "cloudpbx", "crm_tokens": ["shorthand-token-00000001"]},
        "crms": [
            {
                "kind": "retailcrm",
                "base_url": base_url,
                "api_key": "retail-api-key-0001",
                "client_id": "retail-client-id-0001",
            }
        ],
        "trusted_hosts": trusted or [],
    }


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("134744072", "8.8.8.8"),  # public, yet two spellings of one address are one too many
    ],
)
def test_a_shorthand_ipv4_address_is_refused_at_apply_with_the_field_named(host: str, address: str) -> None:
    with pytest.raises(ValidationError) as refused:
        AccountConfig.model_validate(config(f"https://{host}/"))
    [error] = refused.value.errors()
    assert error["loc"] == ("crms", 0, "base_url")
    assert f"shorthand of the IPv4 address {address}" in error["msg"] and f"write {address}" in error["msg"]


@pytest.mark.parametrize("entry", ["127.1:8080", "2130706433:443", "0177.0.0.1:80"])
def test_a_shorthand_address_in_trusted_hosts_is_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="shorthand"):
        AccountConfig.model_validate(config("https://crm.example.com/", [entry]))


@pytest.mark.parametrize("entry", ["169.254.169.254:80", "169.254.169.254", "[fd00:ec2::254]:80", "169.254.170.2:80"])
def test_trusted_hosts_never_trusts_the_instance_metadata_address(entry: str) -> None:
    with pytest.raises(ValidationError, match="instance metadata"):
        AccountConfig.model_validate(config("http://169.254.169.254/", [entry]))


def test_ordinary_addresses_still_apply() -> None:
    AccountConfig.model_validate(config("https://shop.retailcrm.ru/"))
    AccountConfig.model_validate(config("https://8.8.8.8/"))
    AccountConfig.model_validate(config("http://10.0.0.5:8080/", ["10.0.0.5:8080"]))
