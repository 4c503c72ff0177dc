"""Every phone number is matched in E.164, whatever format it arrived in."""

import pytest

from callbridge.core.phones import country_code, international_guess, known_e164, national_digits, normalize


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


# Numbers in many shapes, the tricky ones on purpose: a trunk prefix after the country code, a "(0)"
# the UK writes, extensions, pauses, international prefixes, letters, a '+' in the middle.
SHAPES = [
    "79101234567",
    "+79101234567",
    "+7 (910) 123-45-67",
    "7 910 123 45 67",
    "7.910.123.45.67",
    "+7 8 910 123 45 67",
    "789101234567",
    "89101234567",
    "9101234567",
    "+44 (0) 20 7946 0958",
    "44 20 7946 0958",
    "4402079460958",
    "+442079460958",
    "+1 212 555 1234",
    "12125551234",
    "2125551234",
    "+1 212 555 1234 ext. 5",
    "+12125551234#5",
    "+1 212 555 123 x4",  # an extension whose digit would complete a valid number
    "+7 910 123 45 6 доб. 7",
    "+12125551234,5",
    "+36 20 123 4567",
    "36201234567",
    "0036201234567",
    "06201234567",
    "+39 06 6982 1234",
    "390669821234",
    "+380501234567",
    "380501234567",
    "+7 910 123-45-67 x12",
    "7+9101234567",
    "\u00a0+7\u00a0910\u00a0123\u00a045\u00a067",
    "+",
    "0",
    "anonymous",
    "",
]


@pytest.mark.parametrize("region", ["RU", "GB", "US", "HU", "IT", "UA", ""])
@pytest.mark.parametrize("raw", SHAPES)
def test_a_number_read_without_parsing_is_what_normalize_answers_whenever_it_is_valid(raw, region):
    # known_e164 may only be used as a key: a stored key is valid, normalize made it. So whenever
    # its answer is a valid E.164 number, normalize must agree, or the contact path would answer a
    # known caller under another number than the history is stored with.
    guess = known_e164(raw, country_code(region))
    if guess is not None and normalize(guess, None).e164 == guess:
        assert normalize(raw, region).e164 == guess


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("79101234567", "RU", "+79101234567"),  # the vendor documentation's format
        ("+7 (910) 123-45-67", "RU", "+79101234567"),
        ("+442079460958", "RU", "+442079460958"),
        ("36201234567", "HU", "+36201234567"),
    ],
)
def test_numbers_written_with_their_country_code_are_read_without_parsing(raw, region, e164):
    assert known_e164(raw, country_code(region)) == e164


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("89101234567", "RU"),  # trunk prefix: only the metadata knows
        ("9101234567", "RU"),  # national number
        ("380501234567", "RU"),  # another country's code without '+': national first, as normalize
        ("0036201234567", "RU"),  # international prefix
        ("+1 212 555 1234 ext. 5", "US"),  # an extension
        ("+12125551234#5", "US"),
        ("79101234567", ""),  # an account without a region has no home code
        ("anonymous", "RU"),
    ],
)
def test_numbers_only_parsing_can_read_are_left_to_normalize(raw, region):
    assert known_e164(raw, country_code(region)) is None


def test_country_codes_come_from_the_metadata():
    assert (country_code("RU"), country_code("hu"), country_code(""), country_code(None)) == ("7", "36", "", "")
    assert country_code("ZZ") == ""


@pytest.mark.parametrize("code", ["7", "1", "36", "380", ""])
@pytest.mark.parametrize("raw", SHAPES)
def test_the_key_read_before_the_account_is_the_one_known_e164_gives_under_any_home_code(raw, code):
    # The contact path reads the caller's entry under international_guess before it knows the
    # account's code, and uses it only where known_e164 then agrees: known_e164 must never give a
    # key that the guess missed, under any code.
    known = known_e164(raw, code)
    assert known is None or known == international_guess(raw)


@pytest.mark.parametrize(
    ("raw", "guess"),
    [
        ("79101234567", "+79101234567"),  # the PBX's form: its country code is only a guess here
        ("89101234567", "+89101234567"),  # read as if international; known_e164 refuses it for RU
        ("+7 (910) 123-45-67", "+79101234567"),
        ("  +442079460958 ", "+442079460958"),
        ("0036201234567", None),  # an international or trunk prefix: only parsing can tell
        ("06201234567", None),
        ("7+9101234567", None),
        ("+1 212 555 1234 ext. 5", None),
        ("+12125551234#5", None),
        ("anonymous", None),
        ("", None),
        ("+", None),
    ],
)
def test_a_number_is_guessed_international_only_where_known_e164_could_read_it(raw, guess):
    assert international_guess(raw) == guess
