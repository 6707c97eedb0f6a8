"""Request ids: unique and time-sortable (ULID: 48-bit ms timestamp + 80 random bits,
Crockford base32, 26 characters). Sorting ids sorts requests by time, which makes
the results log easy to scan and page."""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REQUEST_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def new_request_id(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | secrets.randbits(80)
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def is_request_id(s: str) -> bool:
    return bool(REQUEST_ID.match(s))


def timestamp_ms(request_id: str) -> int:
    value = 0
    for ch in request_id[:10]:
        value = value * 32 + _ALPHABET.index(ch)
    return value
