"""E.164 normalisation: every phone number inside CallBridge is matched in E.164.

PBXs send numbers in every shape: `79101234567`, `+7 (910) 123-45-67`, `89101234567` (Russian trunk
prefix), `0620123456` (national), `0036...` (international prefix). The account's default region
decides what a number without a country code means.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

_MAX_INPUT = 64


@dataclass(frozen=True, slots=True)
class Phone:
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


def normalize(raw: str, region: str | None) -> Phone:
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
    parsed = phonenumbers.parse(e164, None)
    formatted: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in formatted if ch.isdigit())
