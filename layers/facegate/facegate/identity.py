"""Names and resident ID numbers: validate, normalise, mask, fingerprint.

Both are sensitive personal information under China's PIPL. The rules here:

* validation errors describe what is wrong with the value, never the value (and
  contain no digits at all, so not even a fragment of a number can leak);
* anything written to a log, a results record or an error carries only the masked
  form (``mask_id_number`` / ``mask_name``) or a ``fingerprint``;
* the service validates both before any vendor is called, so a malformed identity
  is a free 422 instead of a billed vendor rejection.

Masking formats (chosen here, used everywhere):

* ID number: the first 4 and last 4 characters stay, the 10 between become ``*``:
  ``11010519491231002X`` → ``1101**********002X``. The first 4 are province and
  city (not the district), so the birth date is hidden entirely; the last 4 let a
  person recognise their own number, as banks and payment apps show it.
* name: the first character stays and every other one becomes ``*``: ``张三`` →
  ``张*``, ``欧阳娜娜`` → ``欧***``, ``阿依古丽·买买提`` → ``阿*******``. Keeping
  only one character reveals a surname at most; given names, and the structure of
  dotted names, stay hidden.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from datetime import UTC, date, datetime

from facegate.errors import InvalidIdNumber, InvalidName

# --- ID numbers (GB 11643-1999) ------------------------------------------------------

ID_LENGTH = 18
# ISO 7064 MOD 11-2: weight of position i (0-based, left to right) is 2^(17-i) mod 11.
_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
_CHECK_CHARS = "10X98765432"  # indexed by the weighted sum mod 11
_EARLIEST_BIRTH = date(1900, 1, 1)


def id_check_digit(first17: str) -> str:
    """The GB 11643-1999 check character for 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True))
    return _CHECK_CHARS[total % 11]


def validate_id_number(value: object, *, today: date | None = None) -> str:
    """Return the normalised 18-character resident ID number, or raise InvalidIdNumber.

    Normalisation: NFKC (full-width digits typed on a Chinese keyboard become ASCII),
    surrounding whitespace stripped, a lower-case ``x`` check character upper-cased.

    Checks: eighteen characters; seventeen digits then a digit or ``X``; the region
    code's first digit 1–8 (the administrative regions, plus 8 for the Hong Kong,
    Macao and Taiwan residence permits, which use the same format); the birth date
    a real date, not before 1900 and not in the future; the check character.
    Numbers starting with 9 (the 2023 foreigners' permanent residence card) are not
    accepted: the public-security citizen check that vendors run does not cover them.
    """
    if not isinstance(value, str):
        raise InvalidIdNumber("the ID number must be a string")
    s = unicodedata.normalize("NFKC", value).strip().upper()
    if not s:
        raise InvalidIdNumber("the ID number is empty")
    if len(s) == 15 and s.isascii() and s.isdigit():
        raise InvalidIdNumber("old fifteen-digit ID numbers are not accepted; send the eighteen-character number")
    if len(s) != ID_LENGTH:
        raise InvalidIdNumber("an ID number has exactly eighteen characters")
    if not (s[:17].isascii() and s[:17].isdigit()) or not (s[17] == "X" or (s[17].isascii() and s[17].isdigit())):
        raise InvalidIdNumber("an ID number is seventeen digits followed by a digit or X")
    if s[0] not in "12345678":
        raise InvalidIdNumber("the ID number's region code is not valid")
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        raise InvalidIdNumber("the ID number's birth date is not a real date") from None
    if born < _EARLIEST_BIRTH:
        raise InvalidIdNumber("the ID number's birth date is implausibly early")
    if born > (today or datetime.now(UTC).date()):
        raise InvalidIdNumber("the ID number's birth date is in the future")
    if id_check_digit(s[:17]) != s[17]:
        raise InvalidIdNumber("the ID number's check digit is wrong")
    return s


def mask_id_number(value: str) -> str:
    """``1101**********002X``: first 4 and last 4 kept (see the module docstring).

    Anything too short to keep 8 characters and still hide most of it is masked
    completely, so a mistyped fragment is never shown either.
    """
    s = value.strip()
    if len(s) < 12:
        return "*" * len(s)
    return s[:4] + "*" * (len(s) - 8) + s[-4:]


# --- names -----------------------------------------------------------------------------

NAME_MIN, NAME_MAX = 2, 30
MIDDLE_DOT = "\u00b7"  # "·", the separator the ID card itself prints in dotted names
# Dots people type instead of U+00B7 (IME and font variants). The public-security
# record uses U+00B7, and the vendor compares strings, so they are unified.
_DOT_VARIANTS = "\u2022\u2027\u2219\u22c5\u30fb\uff65\u0387\u16eb\u2e31\u00b7"
_HAN = (
    "\u3007"  # 〇, used as a character in some names
    "\u3400-\u4dbf"  # CJK Extension A
    "\u4e00-\u9fff"  # CJK Unified Ideographs
    "\uf900-\ufaff"  # CJK Compatibility Ideographs
    "\U00020000-\U0003134f"  # CJK Extensions B–G (rare characters do occur in names)
)
_CHINESE_NAME = re.compile(rf"[{_HAN}]+(?:{MIDDLE_DOT}[{_HAN}]+)*")
_LATIN_NAME = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*")
_WHITESPACE = re.compile(r"\s+")


def validate_name(value: object) -> str:
    """Return the normalised name, or raise InvalidName.

    Accepted: Chinese names (Han characters, optionally in parts joined by the
    middle dot ``·`` as minority and transliterated foreign names are written), or
    Latin-letter names with single spaces (foreign nationals). Two to thirty
    characters; no digits, no other symbols, no mixing of the two scripts.

    Normalisation: NFKC (full-width Latin letters become ASCII), surrounding
    whitespace stripped, dot variants turned into ``·``; in a Chinese name all
    whitespace is removed (the record has none), in a Latin name runs of spaces
    collapse to one. Letter case is kept: the vendor compares exactly what it gets.
    """
    if not isinstance(value, str):
        raise InvalidName("the name must be a string")
    # NFKC first: it maps e.g. U+0387 to U+00B7 and full-width letters to ASCII.
    s = unicodedata.normalize("NFKC", value).strip()
    s = s.translate({ord(c): MIDDLE_DOT for c in _DOT_VARIANTS})
    if not s:
        raise InvalidName("the name is empty")
    if re.search(f"[{_HAN}]", s):
        s = _WHITESPACE.sub("", s)
        pattern = _CHINESE_NAME
    else:
        s = _WHITESPACE.sub(" ", s)
        pattern = _LATIN_NAME
    if any(c.isdigit() for c in s):
        raise InvalidName("a name cannot contain digits")
    if not NAME_MIN <= len(s) <= NAME_MAX:
        raise InvalidName("a name has between two and thirty characters")
    if not pattern.fullmatch(s):
        if MIDDLE_DOT in s and pattern is _CHINESE_NAME:
            raise InvalidName("a middle dot in a name must stand between two parts of the name")
        raise InvalidName(
            "a name is written in Chinese characters (parts may be joined by a middle dot) "
            "or in Latin letters and spaces, without symbols"
        )
    return s


def mask_name(value: str) -> str:
    """``张*``, ``欧***``: the first character kept, every other one masked."""
    s = value.strip()
    if len(s) <= 1:
        return "*" * len(s)
    return s[0] + "*" * (len(s) - 1)


# --- fingerprints ------------------------------------------------------------------------

PEPPER_ENV = "FACEGATE_PEPPER"


def fingerprint(value: str, *, pepper: str | bytes | None = None) -> str | None:
    """A stable token for a normalised ID number, so records can be correlated ("the
    same person again") without storing it: HMAC-SHA256 keyed by the pepper
    (argument, else the ``FACEGATE_PEPPER`` environment variable). Without a pepper,
    None: nothing is stored.

    Why never a plain hash: a resident ID number has little entropy. Region codes
    (a few thousand), birth dates (~45,000 in 125 years) and three sequence digits
    give ~10^11 candidates, and the check digit removes none of the work: a GPU
    computes that many SHA-256 hashes in minutes, so an unkeyed hash would give the
    numbers back to anyone holding the table. Keep the pepper per stage, in a
    secret, outside the results table.
    """
    if pepper is None:
        pepper = os.environ.get(PEPPER_ENV) or None
    if not pepper:
        return None
    key = pepper.encode("utf-8") if isinstance(pepper, str) else pepper
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()
