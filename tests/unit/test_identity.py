"""Resident ID numbers and names: validation, normalisation, masking, fingerprints."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date

import pytest

from facegate.errors import InvalidIdNumber, InvalidName
from facegate.identity import (
    fingerprint,
    id_check_digit,
    mask_id_number,
    mask_name,
    validate_id_number,
    validate_name,
)

TODAY = date(2025, 6, 1)

# Check characters worked out by hand from GB 11643-1999 (weights 7 9 10 5 8 4 2 1 6 3
# 7 9 10 5 8 4 2, sum mod 11 indexes "10X98765432"); the first is the standard's example.
VALID = [
    "11010519491231002X",  # the standard's own example, check character X
    "110105199003071239",
    "440304200002290014",  # 29 February of a leap year
    "310115198511024514",
    "33010619880615118X",
    "810000199408230013",  # Hong Kong residents' residence permit
]


@pytest.mark.parametrize("number", VALID)
def test_valid_numbers_pass_unchanged(number):
    assert validate_id_number(number, today=TODAY) == number


def test_check_digit_of_the_standard_example():
    assert id_check_digit("11010519491231002") == "X"
    assert id_check_digit("11010519900307123") == "9"


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("  11010519491231002x \n", "11010519491231002X"),  # trimmed, lower-case x
        ("１１０１０５１９４９１２３１００２Ｘ", "11010519491231002X"),  # full-width (NFKC)
    ],
)
def test_normalisation(raw, normalised):
    assert validate_id_number(raw, today=TODAY) == normalised


def _digits_leak(message: str, number: str) -> bool:
    return any(c.isdigit() for c in message) or (bool(number.strip()) and number.strip() in message)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("110105199003071238", "check digit"),  # last digit off by one
        ("11010519491231002Y", "seventeen digits"),  # not a digit or X
        ("11010519900230123X", "birth date"),  # 30 February
        ("110105199013071230", "birth date"),  # month 13
        ("110105209901010012", "future"),  # born 2099, check digit valid
        ("110105189912310015", "early"),  # born 1899, check digit valid
        ("11010519000101001", "eighteen"),  # 17 characters
        ("1101051990030712391", "eighteen"),  # 19 characters
        ("110105900307123", "fifteen"),  # first-generation 15-digit number
        ("A10105199003071239", "seventeen digits"),  # a letter up front
        ("1101051990O3071239", "seventeen digits"),  # letter O for zero
        ("010105199003071235", "region"),  # check digit valid
        ("910105199003071238", "region"),  # check digit valid: a 2023 foreigner's card
        ("", "empty"),
        ("   ", "empty"),
    ],
)
def test_invalid_numbers_are_refused_without_echoing(number, why):
    with pytest.raises(InvalidIdNumber) as exc:
        validate_id_number(number, today=TODAY)
    message = str(exc.value)
    assert why in message
    # No digit at all: not even a fragment of the number can leak into a log.
    assert not _digits_leak(message, number), message
    assert not _digits_leak(repr(exc.value), number)
    assert exc.value.body()["message"] == message


def test_the_fixtures_for_bad_dates_and_regions_have_right_check_digits():
    # Otherwise those cases would be refused for the check digit, not the reason tested.
    for number in ("110105209901010012", "110105189912310015", "010105199003071235", "910105199003071238"):
        assert id_check_digit(number[:17]) == number[17]


def test_today_is_the_cut_off_for_birth_dates():
    born_today = "110105" + "20250601" + "001"
    number = born_today + id_check_digit(born_today)
    assert validate_id_number(number, today=TODAY) == number
    with pytest.raises(InvalidIdNumber, match="future"):
        validate_id_number(number, today=date(2025, 5, 31))


def test_non_strings_are_refused():
    with pytest.raises(InvalidIdNumber):
        validate_id_number(110105199003071239)  # type: ignore[arg-type]
    with pytest.raises(InvalidName):
        validate_name(None)  # type: ignore[arg-type]


# --- names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("张三", "张三"),
        ("  欧阳娜娜 ", "欧阳娜娜"),
        ("张 三", "张三"),  # a Chinese name on the record has no spaces
        ("阿依古丽·买买提", "阿依古丽·买买提"),
        ("阿依古丽・买买提", "阿依古丽·买买提"),  # katakana middle dot, a common IME variant
        ("阿依古丽•买买提", "阿依古丽·买买提"),  # bullet
        ("爱新觉罗·溥仪", "爱新觉罗·溥仪"),
        ("John Smith", "John Smith"),
        ("  JOHN   SMITH ", "JOHN SMITH"),
        ("Ｊｏｈｎ", "John"),  # full-width Latin (NFKC)
        ("王〇", "王〇"),
        ("𠀀𠀁", "𠀀𠀁"),  # CJK Extension B characters
    ],
)
def test_valid_names(raw, normalised):
    assert validate_name(raw) == normalised


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("张", "between two and thirty"),
        ("张" * 31, "between two and thirty"),
        ("", "empty"),
        ("  ", "empty"),
        ("张三3", "digits"),
        ("Agent 007", "digits"),
        ("张三!", "symbols"),
        ("·张三", "middle dot"),
        ("张三·", "middle dot"),
        ("张··三", "middle dot"),
        ("张San", "symbols"),  # mixed scripts
        ("O'Brien", "symbols"),
        ("<script>", "symbols"),
        ("李\u200b四", "symbols"),  # zero-width space
    ],
)
def test_invalid_names_are_refused_without_echoing(name, why):
    with pytest.raises(InvalidName) as exc:
        validate_name(name)
    message = str(exc.value)
    assert why in message
    stripped = name.strip()
    if stripped:
        assert stripped not in message
    # Not one character of a Chinese name, and no digits, appear in the message.
    assert not any(c in message for c in stripped if not c.isascii())
    assert not any(c.isdigit() for c in message)


# --- masking ---------------------------------------------------------------------------


def test_mask_id_number_keeps_first_four_and_last_four():
    assert mask_id_number("11010519491231002X") == "1101**********002X"
    masked = mask_id_number("110105199003071239")
    assert masked == "1101**********1239"
    assert "19900307" not in masked  # the birth date never survives masking


@pytest.mark.parametrize("fragment", ["", "1", "11010519", "11010519900"])
def test_short_fragments_are_masked_completely(fragment):
    assert mask_id_number(fragment) == "*" * len(fragment)


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三", "张*"),
        ("张三丰", "张**"),
        ("欧阳娜娜", "欧***"),
        ("阿依古丽·买买提", "阿*******"),
        ("John Smith", "J*********"),
        ("张", "*"),
        ("", ""),
    ],
)
def test_mask_name(name, masked):
    assert mask_name(name) == masked


# --- fingerprints ------------------------------------------------------------------------


def test_no_fingerprint_without_a_pepper(monkeypatch):
    # A plain hash of an ID number is reversible by brute force: store nothing instead.
    monkeypatch.delenv("FACEGATE_PEPPER", raising=False)
    assert fingerprint("11010519491231002X") is None


def test_fingerprint_with_pepper_is_hmac_sha256(monkeypatch):
    value = "11010519491231002X"
    expected = hmac.new(b"stage-pepper", value.encode(), hashlib.sha256).hexdigest()
    monkeypatch.setenv("FACEGATE_PEPPER", "stage-pepper")
    assert fingerprint(value) == expected
    assert fingerprint(value) != hashlib.sha256(value.encode()).hexdigest()
    # An explicit pepper wins over the environment.
    other = hmac.new(b"other", value.encode(), hashlib.sha256).hexdigest()
    assert fingerprint(value, pepper=b"other") == other


def test_fingerprint_is_hex_and_hides_the_value(monkeypatch):
    monkeypatch.setenv("FACEGATE_PEPPER", "p")
    fp = fingerprint("张三")
    assert re.fullmatch(r"[0-9a-f]{64}", fp)
    assert fingerprint("张三") == fp
    assert fingerprint("张四") != fp
