"""One error tree for facegate.

Every failure a caller can see is a FacegateError subclass with a stable upper-case
``code``, an HTTP ``status`` and a ``retryable`` flag. They are turned into the
contract's error body in exactly one place (``facegate.api``). Messages are written
for the caller and never carry image data, secrets, names or ID numbers. A vendor's
own text (``vendor_message``) is passed on, but only through ``scrub_vendor_message``,
which every error applies itself, so no adapter can forget it.

Two branches matter to the router:

* ``CallerError`` — the request itself is wrong. Retrying it, or asking another
  vendor, cannot help, so the router never fails over on one.
* ``VendorError`` — the vendor (or our account with it) is the problem. Whether the
  router may move on to the next vendor is ``failover``; whether the vendor may
  have billed the attempt is ``billed``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from types import EllipsisType
from typing import Any, ClassVar

# A vendor's message is passed on to the caller and the logs, but gateways echo what
# they were sent: the Tencent market gateway answers a bad signature with the request's
# ``hmac id="<secret id>"``. Anything credential-like is cut out, and the rest bounded.
VENDOR_MESSAGE_MAX = 200
_REDACTED = "[redacted]"
_CREDENTIAL_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # An echoed Authorization header: its whole value, to the end of the line.
    (re.compile(r"(\b(?:proxy-)?authorization\b\"?\s*[:=：]\s*)[^\r\n]*", re.I), rf"\g<1>{_REDACTED}"),
    # "Bearer <token>", "hmac id=\"<secret id>\"" (the Tencent market's Authorization scheme).
    (re.compile(r"(\bbearer\s+)[\w\-.~+/]+=*", re.I), rf"\g<1>{_REDACTED}"),
    (re.compile(r"(\bhmac\s+id\s*=\s*)(?:\"[^\"]*\"|'[^']*'|[^\s,;]+)", re.I), rf"\g<1>{_REDACTED}"),
    # name=value, name: value, "name":"value" for any key, secret, sign(ature), token,
    # password or credential name (appKey, secret_key, sign, X-Api-Key, access_token …);
    # not a name that only says which kind (signType, sign_method, keyAlgorithm).
    (
        re.compile(
            r"(\b[\w-]*(?:key|secret|sign|token|passw(?:or)?d|pwd|credential)(?![\w-]*(?:type|method|algorithm)\b)"
            r"[\w-]*\"?\s*[:=：]\s*)(?:\"[^\"]*\"|'[^']*'|[^\s,;&\"'}\]]+)",
            re.I,
        ),
        rf"\g<1>{_REDACTED}",
    ),
    # Bare runs that look like keys or signatures: 32+ hex digits (MD5/SHA digests,
    # hex keys), or 32+ base64 characters mixing upper case, lower case and digits.
    (re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{32,}(?![0-9A-Za-z])"), _REDACTED),
    (
        re.compile(r"(?<![\w+/-])(?=[\w+/-]*[0-9])(?=[\w+/-]*[a-z])(?=[\w+/-]*[A-Z])[\w+/-]{32,}=*(?:%3D)*", re.A),
        _REDACTED,
    ),
)


def scrub_vendor_message(message: object) -> str | None:
    """A vendor's message, safe to pass on: credential-like parts (keys, signatures,
    tokens, Authorization values, long hex or base64 runs) replaced by ``[redacted]``,
    then cut to ``VENDOR_MESSAGE_MAX`` characters (after scrubbing, so a cut can never
    shorten a secret below what the patterns recognise)."""
    if not isinstance(message, str) or not message:
        return None
    for pattern, replacement in _CREDENTIAL_PATTERNS:
        message = pattern.sub(replacement, message)
    return message[:VENDOR_MESSAGE_MAX]


class FacegateError(Exception):
    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    # What ``billed`` is when the raiser does not say: None (unknown) unless the
    # error can only happen before anything was sent.
    default_billed: ClassVar[bool | None] = None

    def __init__(
        self,
        message: str,
        *,
        vendor: str | None = None,
        vendor_code: str | int | None = None,
        vendor_message: str | None = None,
        billed: bool | EllipsisType | None = ...,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.vendor = vendor
        self.vendor_code = None if vendor_code is None else str(vendor_code)
        self.vendor_message = scrub_vendor_message(vendor_message)
        # None: we cannot know (e.g. a read timeout after the request went out).
        self.billed: bool | None = self.default_billed if billed is ... else billed

    def body(self) -> dict[str, Any]:
        """The contract's ``error`` object."""
        return {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "vendor": self.vendor,
            "vendor_code": self.vendor_code,
            "vendor_message": self.vendor_message,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code}: {self.message!r}, vendor={self.vendor!r})"


# --- the caller's mistakes: 4xx, no failover, never retried as-is -------------------


class CallerError(FacegateError):
    code = "INVALID_REQUEST"
    status = 400
    default_billed = False  # raised by our checks before any call; vendors say otherwise explicitly


class InvalidRequest(CallerError):
    code = "INVALID_REQUEST"
    status = 400


class MalformedJson(CallerError):
    code = "MALFORMED_JSON"
    status = 400


class UnsupportedMediaType(CallerError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    status = 415


class UnknownVendor(CallerError):
    code = "UNKNOWN_VENDOR"
    status = 400


class UnsupportedOperation(CallerError):
    """The chosen vendor does not offer this operation."""

    code = "UNSUPPORTED_OPERATION"
    status = 400


class InvalidOption(CallerError):
    code = "INVALID_OPTION"
    status = 400


class InvalidImage(CallerError):
    """Empty, undecodable, truncated or not an image at all."""

    code = "INVALID_IMAGE"
    status = 422


class UnsupportedImageFormat(CallerError):
    code = "UNSUPPORTED_IMAGE_FORMAT"
    status = 415


class ImageTooLarge(CallerError):
    code = "IMAGE_TOO_LARGE"
    status = 413


class ImageUnavailable(CallerError):
    """An image URL or S3 object that could not be fetched."""

    code = "IMAGE_UNAVAILABLE"
    status = 422


class NoFace(CallerError):
    code = "NO_FACE"
    status = 422


class MultipleFaces(CallerError):
    code = "MULTIPLE_FACES"
    status = 422


class PoorImageQuality(CallerError):
    code = "POOR_IMAGE_QUALITY"
    status = 422


class LivenessFailed(CallerError):
    code = "LIVENESS_FAILED"
    status = 422


class InvalidIdNumber(CallerError):
    code = "INVALID_ID_NUMBER"
    status = 422


class InvalidName(CallerError):
    code = "INVALID_NAME"
    status = 422


class IdentityMismatch(CallerError):
    """The name and ID number do not belong together (checked by the vendor)."""

    code = "IDENTITY_MISMATCH"
    status = 422


class IdentityNotFound(CallerError):
    code = "IDENTITY_NOT_FOUND"
    status = 422


class NotFound(CallerError):
    code = "NOT_FOUND"
    status = 404


class MethodNotAllowed(CallerError):
    code = "METHOD_NOT_ALLOWED"
    status = 405


class IdempotencyKeyReused(CallerError):
    """The same Idempotency-Key came back with a different request body."""

    code = "IDEMPOTENCY_KEY_REUSED"
    status = 422


class IdempotencyInProgress(CallerError):
    code = "IDEMPOTENCY_IN_PROGRESS"
    status = 409
    retryable = True


class Unauthorized(CallerError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(CallerError):
    code = "FORBIDDEN"
    status = 403


class RateLimited(CallerError):
    """The caller exceeded facegate's own usage plan."""

    code = "RATE_LIMITED"
    status = 429
    retryable = True


# --- the vendor's trouble: 5xx (or 429), may fail over -----------------------------


class VendorError(FacegateError):
    code = "VENDOR_ERROR"
    status = 502
    # May the router try the next vendor? Only where the vendor gave no answer.
    failover: ClassVar[bool] = True


class VendorNotConfigured(VendorError):
    code = "VENDOR_NOT_CONFIGURED"
    status = 503
    default_billed = False  # nothing can be sent without credentials


class VendorAuthFailed(VendorError):
    """Our credentials were refused: signature, key, IP allow-list, disabled account."""

    code = "VENDOR_AUTH_FAILED"
    status = 502


class VendorQuotaExhausted(VendorError):
    code = "VENDOR_QUOTA_EXHAUSTED"
    status = 503


class VendorRateLimited(VendorError):
    code = "VENDOR_RATE_LIMITED"
    status = 429
    retryable = True


class VendorUnavailable(VendorError):
    code = "VENDOR_UNAVAILABLE"
    status = 503
    retryable = True


class VendorConnectionLost(VendorUnavailable):
    """The connection dropped after the request was sent: the vendor may have done
    (and billed) the work, so asking another vendor could bill the same check twice."""

    failover = False


class VendorTimeout(VendorError):
    code = "VENDOR_TIMEOUT"
    status = 504
    retryable = True

    def __init__(self, message: str, *, sent: bool, **kw: Any) -> None:
        # A read timeout means the vendor may have done (and billed) the work:
        # moving on to another vendor could bill the same check twice.
        super().__init__(message, billed=None if sent else False, **kw)
        self.sent = sent

    @property
    def failover(self) -> bool:  # type: ignore[override]  # VendorError's class attribute, decided per instance here
        return not self.sent


class VendorBadResponse(VendorError):
    """Malformed, unsigned or tampered response: we cannot trust an answer."""

    code = "VENDOR_BAD_RESPONSE"
    status = 502
    failover = False


class VendorRejected(VendorError):
    """The vendor refused the request for a reason it does not explain well enough
    to blame the caller (e.g. a generic parameter error)."""

    code = "VENDOR_REJECTED"
    status = 502
    failover = False


class DeadlineExceeded(VendorError):
    code = "VENDOR_TIMEOUT"
    status = 504
    retryable = True
    failover = False


class InternalError(FacegateError):
    code = "INTERNAL_ERROR"
    status = 500


class IdempotencyNotConfigured(FacegateError):
    """Idempotency-Key sent to a deployment without an idempotency table: refusing is
    safer than silently running a request the caller believes is safe to repeat."""

    code = "IDEMPOTENCY_NOT_CONFIGURED"
    status = 501


class UsageNotConfigured(FacegateError):
    """GET /v1/usage on a deployment without a usage table: nothing was counted."""

    code = "USAGE_NOT_CONFIGURED"
    status = 501


class IdempotencyUnavailable(FacegateError):
    """The idempotency store failed before the operation ran; nothing was called."""

    code = "IDEMPOTENCY_UNAVAILABLE"
    status = 503
    retryable = True


# Pydantic's own messages for these can quote the input (an image, an ID number);
# ours never do.
_SAFE_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "literal_error": "is not one of the allowed values",
    "string_type": "must be a string",
    "string_too_short": "is too short",
    "string_too_long": "is too long",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "greater_than_equal": "is too small",
    "less_than_equal": "is too large",
    "too_short": "has too few items",
    "too_long": "has too many items",
    "enum": "is not one of the allowed values",
}


def describe_validation_errors(
    errors: Sequence[Mapping[str, Any]], *, root: str = "body", skip: tuple[str, ...] = ()
) -> str:
    """A caller-facing message from pydantic error dicts: field locations and safe
    wording only, so the offending values are never echoed back."""
    parts = []
    for err in errors[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in skip)
        kind = err.get("type", "")
        if kind == "value_error":  # our own validators' messages, written to be safe
            msg = str(err.get("msg", "")).removeprefix("Value error, ")
        else:
            msg = _SAFE_MESSAGES.get(kind, "is invalid")
        parts.append(f"{loc or root}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "invalid request: " + "; ".join(parts) + more
