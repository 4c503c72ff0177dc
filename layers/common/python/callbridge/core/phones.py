"""E.164 normalisation: every phone number inside CallBridge is matched in E.164.

PBXs send numbers in every shape: `79101234567`, `+7 (910) 123-45-67`, `89101234567` (Russian trunk
prefix), `0620123456` (national), `0036...` (international prefix). The account's default region
decides what a number without a country code means.

phonenumbers is imported where it is used, not here: its import is about a tenth of the contact
path's cold start (bench/benchmark.py), and `known_e164` lets that path answer a known caller
without it.
"""

from __future__ import annotations

from typing import NamedTuple

_MAX_INPUT = 64
# What may surround the digits of a number that `known_e164` reads without phonenumbers: no letters
# (an extension: "ext. 12", "x12"), no '#', ';' or ',' (extensions and pauses), which phonenumbers
# would read apart from the number.
_PLAIN = frozenset("0123456789+ -().\u00a0")


class Phone(NamedTuple):
    raw: str
    e164: str | None

    @property
    def key(self) -> str:
        """What to match and store by: E.164 when the number could be understood, else the raw text
        (hidden caller ids, short internal numbers), so such calls are still kept."""
        return self.e164 or self.raw


def is_number(text: str | None) -> bool:
    """Whether a client number was given at all: a withheld caller id comes as an empty field or a
    word (`anonymous`, `unknown`), never with a digit. Short internal numbers are numbers."""
    return any(ch.isdigit() for ch in text or "")


def country_code(region: str | None) -> str:
    """The calling code of a region ("7" for RU), "" when there is none: stored on the account when
    it is applied (features/admin.py), so that the contact path has it without phonenumbers."""
    if not region:
        return ""
    import phonenumbers

    code = phonenumbers.country_code_for_region(region.upper())
    return str(code) if code else ""


def international_guess(raw: str) -> str | None:
    """What `known_e164` answers for `raw` under any home code its digits begin with ("+" and the
    digits), or None when it answers None under every one. So it needs no account: the contact path
    reads the caller's directory entry under this key together with the account
    (core/accounts.py authenticate_caller), and uses it only where `known_e164` agrees."""
    text = raw.strip()[:_MAX_INPUT]
    if not text or not set(text) <= _PLAIN:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits or "+" in text[1:] or digits.startswith("0"):
        return None
    return "+" + digits


def known_e164(raw: str, home_code: str) -> str | None:
    """The E.164 number `raw` is *if it is valid*, read without phonenumbers, or None when only
    parsing can tell (a trunk or international prefix, a national number, an extension).

    It is the first candidate `normalize` tries for a number written with its country code (a '+',
    or digits that begin with the account's code `home_code` and no trunk prefix), and `normalize`
    takes that candidate whenever it is valid. So where this E.164 is a stored key - stored keys
    are valid numbers, `normalize` made them - it is exactly what `normalize` would have answered.
    Whether it is valid is for the caller to learn that way, never from this function."""
    guess = international_guess(raw)
    if guess is None:
        return None
    # No leading '0' here (international_guess refused it): no trunk prefix before the home code.
    if raw.lstrip().startswith("+") or (home_code and guess.startswith("+" + home_code)):
        return guess
    return None


def normalize(raw: str, region: str | None) -> Phone:
    import phonenumbers

    text = raw.strip()[:_MAX_INPUT]
    if not text or not any(ch.isdigit() for ch in text):
        return Phone(raw=text, e164=None)
    digits = "".join(ch for ch in text if ch.isdigit())
    if text.startswith("00"):
        return _first_valid(text, [("+" + digits[2:], None)])
    if text.startswith("+"):
        return _first_valid(text, [(text, None)])
    home_code = phonenumbers.country_code_for_region(region) if region else 0
    candidates: list[tuple[str, str | None]] = []
    if not text.startswith("0") and home_code and digits.startswith(str(home_code)):
        # Digits that begin with the home country code and no trunk prefix are far more often an
        # international number without its '+' (79101234567) than a national one.
        candidates.append(("+" + digits, None))
    candidates.append((text, region))
    # A number sent without '+' may still be foreign (e.g. 380... reaching a RU account).
    candidates.append(("+" + digits, None))
    return _first_valid(text, candidates)


def _first_valid(raw: str, candidates: list[tuple[str, str | None]]) -> Phone:
    import phonenumbers

    for candidate, region in candidates:
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return Phone(raw=raw, e164=phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    return Phone(raw=raw, e164=None)


def national_digits(e164: str) -> str:
    """The national significant number with the trunk prefix, as people dial it (e.g. 0620123456)."""
    import phonenumbers

    parsed = phonenumbers.parse(e164, None)
    formatted: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in formatted if ch.isdigit())
