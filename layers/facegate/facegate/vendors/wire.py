"""The small wire helpers every vendor module shares: a vendor's code table and the
raiser that turns a code into facegate's error (``VendorCode``, ``raise_for_code``),
readers for the fields of an answer (``text``, ``request_id``, ``percent``, ``header``,
``json_body``) and the form encoding of a request (``form_body``). Pure functions; the
vendor model and the hooks are ``facegate.vendors.base``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote_plus

from facegate.errors import FacegateError, VendorBadResponse, VendorError, VendorRateLimited, VendorUnavailable

if TYPE_CHECKING:
    from facegate.vendors.base import HttpResponse


# --- reading answers ---------------------------------------------------------------------


@dataclass(frozen=True)
class VendorCode:
    """What one of a vendor's codes means to facegate: the error to raise, facegate's
    own message for it (``{code}`` in it becomes the code), and whether the vendor
    billed the call (None: nothing says either way)."""

    error: type[FacegateError]
    message: str
    billed: bool | None


def raise_for_code(
    table: Mapping[str, VendorCode],
    code: str,
    *,
    vendor: str,
    vendor_message: str | None = None,
    unknown: VendorCode | None = None,
    billed: bool | EllipsisType | None = ...,
    vendor_code: str | None = None,
) -> NoReturn:
    """Raise what ``table`` says ``code`` means; a code the table does not document
    raises ``unknown`` (by default a ``VendorError`` of unknown billing). Either way the
    error carries the vendor's code and message (``errors`` scrubs and bounds the
    message). Only the code decides, never the vendor's message text.

    ``billed`` wins over the table's where the answer itself says (Shuxun's ``isFee``).
    ``vendor_code`` is the code the error reports when it is not the key looked up
    (face2 looks up the HTTP status but reports the code its body carried)."""
    entry = (
        table.get(code)
        or unknown
        or VendorCode(VendorError, f"{vendor} answered with undocumented code {{code}}", None)
    )
    raise entry.error(
        entry.message.replace("{code}", code),
        vendor=vendor,
        vendor_code=code if vendor_code is None else vendor_code,
        vendor_message=vendor_message,
        billed=entry.billed if billed is ... else billed,
    )


# A vendor's request id is stored with every result: a run-away one is cut.
MAX_REQUEST_ID = 200


def text(value: Any) -> str | None:
    """A non-empty string from a vendor's JSON, else None. A message needs no cap
    here: every error passes ``vendor_message`` through ``errors.scrub_vendor_message``."""
    return value if isinstance(value, str) and value else None


def request_id(value: Any) -> str | None:
    """A vendor's own request id (a non-empty string), at most ``MAX_REQUEST_ID`` long."""
    value = text(value)
    return None if value is None else value[:MAX_REQUEST_ID]


def percent(value: Any) -> float | None:
    """A 0..100 score as a float, or None when it is missing, not a number or off the scale."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and 0.0 <= value <= 100.0 else None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively even if ``headers`` is a plain dict."""
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lower), None)
    return value


def json_body(response: HttpResponse, vendor: str) -> Any:
    """The response's JSON, or the right error when there is none.

    A 429 is a rate limit and a 5xx an outage whatever the body says; anything
    else that is not JSON is a response we cannot trust.
    """
    if response.status == 429:
        raise VendorRateLimited(f"{vendor} is rate limiting requests", vendor=vendor, vendor_code="429", billed=False)
    try:
        return json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        if response.status >= 500:
            raise VendorUnavailable(
                f"{vendor} answered HTTP {response.status}",
                vendor=vendor,
                vendor_code=str(response.status),
                billed=None,
            ) from None
        raise VendorBadResponse(
            f"{vendor} answered HTTP {response.status} without a JSON body", vendor=vendor, billed=None
        ) from None


_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def form_body(fields: Mapping[str, str] | Sequence[tuple[str, str]]) -> bytes:
    """``application/x-www-form-urlencoded`` exactly as ``urllib.parse.urlencode``
    writes it (UTF-8, space as ``+``), but fast for base64 images: their text needs
    only ``+``, ``/`` and ``=`` escaped, and quoting megabytes character by character
    costs ~6 ms per image. Built as bytes: ``bytes.replace`` is ~3x ``str.replace``
    here, and the megabytes are copied once less (bench/overhead_bench.py)."""

    def enc(value: str) -> bytes:
        if len(value) > 256 and value.isascii():
            raw = value.encode("ascii")
            if not raw.translate(None, _BASE64_ALPHABET):  # nothing left: base64 text only
                return raw.replace(b"+", b"%2B").replace(b"/", b"%2F").replace(b"=", b"%3D")
        return quote_plus(value).encode("ascii")

    parts: list[bytes] = []
    for k, v in fields.items() if isinstance(fields, Mapping) else fields:
        parts += (b"&" if parts else b"", quote_plus(k).encode("ascii"), b"=", enc(v))
    return b"".join(parts)
