"""The forms a caller's number is found in before it is erased (features/erasure.py `Number`)."""

from __future__ import annotations

import json

import pytest

from callbridge.features.erasure import NotANumber, Number

RU = Number.read("8 (910) 123-45-67", "RU")


@pytest.mark.parametrize("typed", ["+79101234567", "79101234567", "89101234567", "8 910 123 45 67", "+7-910-123-4567"])
def test_any_form_a_person_types_is_read_as_the_e164_number(typed):
    assert Number.read(typed, "RU").e164 == "+79101234567"


@pytest.mark.parametrize("typed", ["", "anonymous", "12", "+7 910"])
def test_what_is_no_number_is_refused(typed):
    with pytest.raises(NotANumber, match="not a phone number in region RU"):
        Number.read(typed, "RU")


@pytest.mark.parametrize(
    "stored",
    [
        "+79101234567",
        "79101234567",
        "89101234567",
        "9101234567",
        "0079101234567",
        "8107 910 123 45 67",
        "+7 (910) 123-45-67",
        "8.910.123.45.67",
        "CBK#demo#minicrm#+79101234567",
        json.dumps({"phone": "89101234567", "duration": 124}),
        json.dumps({"phone": 79101234567}),
        "called back at 2026-12-07 10:00 from 8 910 1234567",
        79101234567,
        {"phones": ["+79101234567"]},
        {"+79101234567": "a key"},
        {"+79101234567", "+79161234567"},
    ],
)
def test_every_stored_form_is_found(stored):
    assert RU.found_in(stored)


@pytest.mark.parametrize(
    "stored",
    [
        "+79161234567",  # another number
        "+19101234567",  # the same digits in another country
        "19101234567",
        "791012345670",  # a longer number
        "2026-12-07T09:10:12Z 3456789",
        json.dumps({"phone": "79161234567", "duration": 124}),
        True,
        None,
        {"user": "andy"},
    ],
)
def test_other_numbers_and_digits_are_not_taken_for_it(stored):
    assert not RU.found_in(stored)


def test_a_number_of_another_country_is_found_in_its_own_forms():
    hungarian = Number.read("06 20 123 4567", "HU")
    assert hungarian.e164 == "+36201234567"
    assert hungarian.found_in("0036201234567") and hungarian.found_in("06201234567")
    assert not hungarian.found_in("+79101234567")
