"""Every phone number is matched in E.164, whatever format it arrived in."""

import pytest

from callbridge.core.phones import national_digits, normalize


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("79101234567", "RU", "+79101234567"),  # the vendor documentation's format: country code, no '+'
        ("89101234567", "RU", "+79101234567"),  # Russian trunk prefix
        ("9101234567", "RU", "+79101234567"),  # national significant number only
        ("+7 (910) 123-45-67", "RU", "+79101234567"),
        ("380501234567", "RU", "+380501234567"),  # foreign number without '+'
        ("0036 20 123 4567", "RU", "+36201234567"),  # international prefix
        ("06201234567", "HU", "+36201234567"),
        ("4915112345678", "DE", "+4915112345678"),
        ("015112345678", "DE", "+4915112345678"),
        ("+48 22 123 45 67", "PL", "+48221234567"),
        ("2125551234", "US", "+12125551234"),
    ],
)
def test_numbers_become_e164(raw, region, e164):
    assert normalize(raw, region).e164 == e164


@pytest.mark.parametrize("raw", ["anonymous", "101", "", "   ", "+", "12"])
def test_numbers_that_are_not_phone_numbers_are_kept_raw(raw):
    phone = normalize(raw, "RU")
    assert phone.e164 is None
    assert phone.key == raw.strip()


def test_national_digits_for_crms_that_want_them():
    assert national_digits("+36201234567") == "06201234567"
