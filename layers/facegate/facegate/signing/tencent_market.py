"""Tencent Cloud API marketplace key-pair signing (``hmac-sha1`` over ``x-date x-source``).

Products sold on the Tencent Cloud marketplace sit behind Tencent's API gateway,
which authenticates each call with the key pair the purchase created::

    X-Source: market
    X-Date: Mon, 19 Mar 2018 12:08:40 GMT
    Authorization: hmac id="<secret_id>", algorithm="hmac-sha1",
                   headers="x-date x-source", signature="<base64 HMAC-SHA1>"

where the signature is over ``"x-date: <X-Date>\\nx-source: <X-Source>"`` keyed by
the secret key (UTF-8 both). The gateway refuses an X-Date more than 15 minutes
from its clock.

Pure: the time comes in as an argument.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from email.utils import format_datetime

ALGORITHM = "hmac-sha1"
SIGNED_HEADERS = "x-date x-source"


def x_date(now: datetime) -> str:
    """RFC 1123 date in GMT, e.g. ``Mon, 19 Mar 2018 12:08:40 GMT``.

    Formatted by ``email.utils.format_datetime``, which spells day and month names
    from its own English tables: ``strftime("%a, %b")`` follows the process locale
    (a Lambda or laptop with a Chinese LC_TIME would send "一, 19 3月"), and the
    gateway would refuse every call.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("x_date needs a timezone-aware datetime")
    return format_datetime(now.astimezone(UTC).replace(microsecond=0), usegmt=True)


def string_to_sign(x_date_value: str, source: str) -> str:
    return f"x-date: {x_date_value}\nx-source: {source}"


def signature(secret_key: str, x_date_value: str, source: str) -> str:
    mac = hmac.new(secret_key.encode("utf-8"), string_to_sign(x_date_value, source).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def authorization(secret_id: str, secret_key: str, x_date_value: str, source: str) -> str:
    """The ``Authorization`` header value, spelled exactly as the vendor samples do."""
    _check_header_safe(secret_id, "secret_id")
    _check_header_safe(source, "source")
    sig = signature(secret_key, x_date_value, source)
    return f'hmac id="{secret_id}", algorithm="{ALGORITHM}", headers="{SIGNED_HEADERS}", signature="{sig}"'


def headers(secret_id: str, secret_key: str, source: str, now: datetime) -> dict[str, str]:
    """``X-Source``, ``X-Date`` and ``Authorization`` for one call at ``now``."""
    date_value = x_date(now)
    return {
        "X-Source": source,
        "X-Date": date_value,
        "Authorization": authorization(secret_id, secret_key, date_value, source),
    }


def _check_header_safe(value: str, what: str) -> None:
    # Both values are copied into headers and (source) the signed string: a quote,
    # comma or line break would change the header's structure, not just its value.
    if not value or not value.isascii() or not value.isprintable() or any(c in value for c in '",\\'):
        raise ValueError(f"{what} must be non-empty printable ASCII without quotes, commas or backslashes")
