"""Shuxun (数勋) request signing.

The doc: ``sign = sha256(appKey + timestamp + appSecret)``, the three strings joined
in that order, where ``timestamp`` is the Unix time in milliseconds as a decimal
string. Every sample in the doc (Java ``DigestUtils.sha256Hex``, Python
``hexdigest()``, C# ``.ToLower()``) sends the digest as lowercase hex of the UTF-8
bytes. The three values travel as the request headers ``appKey``, ``timestamp`` and
``sign``.

Pure functions: no clock here; the caller passes the time in.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def timestamp_ms(now: datetime) -> str:
    """``now`` as the doc's ``timestamp``: Unix milliseconds, a decimal string.

    Integer arithmetic on timedelta rather than ``now.timestamp() * 1000``: the float
    route can land one millisecond off, and the sign covers this exact string.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        # A naive time would be read in the host's zone and be hours off the vendor's clock.
        raise ValueError("timestamp_ms needs a timezone-aware datetime")
    return str((now - _EPOCH) // _ONE_MS)


def sign(app_key: str, timestamp_ms: str, app_secret: str) -> str:
    """``sha256(appKey + timestamp + appSecret)`` as lowercase hex."""
    if not (timestamp_ms.isascii() and timestamp_ms.isdigit()):
        # Catches seconds-as-float ("1682476904.289") before it becomes a signature error at the vendor.
        raise ValueError("timestamp_ms must be Unix milliseconds as decimal digits")
    return hashlib.sha256((app_key + timestamp_ms + app_secret).encode("utf-8")).hexdigest()


def auth_headers(app_key: str, timestamp_ms: str, app_secret: str) -> dict[str, str]:
    """The three documented auth headers, in the doc's order."""
    return {"appKey": app_key, "timestamp": timestamp_ms, "sign": sign(app_key, timestamp_ms, app_secret)}
