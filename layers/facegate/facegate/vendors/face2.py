"""face2 API (vendor-docs/002): detect (``/face2/locate``), compare (``/face2/verify``)
and features (``/face2/features``).

Every call is a JSON envelope ``{appId, version, signType, signData, encType,
timestamp, data}`` signed as ``facegate.signing.face2`` describes. The doc names no
host, so the secret must carry ``endpoint``.

Normalisation
-------------
* **compare** — ``score`` is a *distance* (smaller is more alike; the doc's example
  is 0.066 with ``is_match`` true). The doc does not name the metric. ArcFace
  embeddings are unit vectors (the example features have the size of a unit
  512-vector's entries), so both usual distances — Euclidean and cosine — lie in
  [0, 2]. ``similarity = clip(1 − score / 2, 0, 1)`` maps that whole range
  monotonically onto [0, 1], so neither reading loses its top half to clipping.
  ``is_match`` is the vendor's verdict (used at ``normal``). The thresholds around it
  (similarity 0.40 / 0.45 / 0.55 = distance 1.20 / 1.10 / 0.90) follow the usual
  Euclidean operating point for unit ArcFace embeddings (≈1.13, e.g. DeepFace's
  ``euclidean_l2`` threshold for ArcFace): ``low`` accepts a little further,
  ``high`` asks for clearly closer faces. The metric, the scale and so the mapping
  are *assumptions* (the doc says only 值越小相似度越高), so the score may tighten
  ``is_match`` but never overrule it (``scale_documented=False``): ``high`` is
  is_match *and* distance < 0.90, ``normal`` is is_match, ``low`` is is_match too —
  ``is_match: false`` is no_match at every level. The thresholds alone decide only
  when ``is_match`` is missing; all are strict (the doc gives no line of its own).
* **detect** — the doc labels each location ``[top, right, bottom, left]``, but its
  own example (``[1145, 364, 1335, 607]``) is a box only as ``[left, top, right,
  bottom]``: read as labelled, its right edge is left of its left edge. Both readings
  need element 2 > element 0; they disagree on elements 1 and 3 (labelled: 1 > 3,
  example: 3 > 1), so at most one of them is a box. facegate takes the labelled
  reading when it is a box, else the example's, and counts which one it used
  (metric ``Face2BoxReading``, dimension ``reading`` = ``labelled`` | ``example``) so
  the vendor's real order shows in CloudWatch. A location that is a box in neither
  reading (empty or inverted both ways) is refused as ``VENDOR_BAD_RESPONSE``.
  Either way it becomes ``left, top, width = right − left, height = bottom − top``.
* **features** — ``features``, 512 floats (ArcFace); model ``face2-arcface-512``.

Billing is not documented. Assumed: a success (code 0) is billed; a documented
error code is a refusal before any work and is not billed; anything else (an
undocumented code, a 5xx, a response we cannot read) is unknown.

Response signatures: the documented responses carry ``signType: "plain"`` and no
``signData``. The doc's verification step (验签) applies to whatever carries a
signature, so a response that does claim one (SHA256 or SM2) is verified and
refused on a mismatch; an unsigned response is accepted as documented.
"""

from __future__ import annotations

import hmac
import json
import math
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeIs

from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator

from facegate.errors import (
    ImageTooLarge,
    InvalidImage,
    InvalidRequest,
    VendorAuthFailed,
    VendorBadResponse,
    VendorQuotaExhausted,
    VendorRejected,
    VendorUnavailable,
)
from facegate.images import ImageLimits
from facegate.models import Operation, SecurityLevel
from facegate.observability import count
from facegate.signing import face2 as signing
from facegate.vendors.base import (
    CallContext,
    CompareOutcome,
    Credentials,
    DetectedFace,
    DetectOutcome,
    FeaturesOutcome,
    HttpCompare,
    HttpDetect,
    HttpFeatures,
    HttpRequest,
    HttpResponse,
    ImageRef,
)
from facegate.vendors.wire import VendorCode, json_body, raise_for_code, request_id, text

VENDOR = "face2"
PATHS: dict[Operation, str] = {
    Operation.DETECT: "/face2/locate",
    Operation.COMPARE: "/face2/verify",
    Operation.FEATURES: "/face2/features",
}
MODEL = "face2-arcface-512"
FEATURE_DIMENSION = 512

# Similarity thresholds (see the module docstring for the distance mapping).
THRESHOLDS: dict[SecurityLevel, float] = {"low": 0.40, "normal": 0.45, "high": 0.55}

# Every documented code. The global ones (98xx) apply to every path, the 9xxx ones
# are listed under each of locate, verify and features.
# A documented code is a refusal before any work: not billed.
CODES: Mapping[str, VendorCode] = {
    # The adapter sends every documented field; a missing one is a mismatch between
    # us and the vendor, not something the caller can fix.
    "9001": VendorCode(VendorRejected, "face2 says a required parameter is missing", False),
    "9002": VendorCode(ImageTooLarge, "the image is larger than face2 accepts (2 MB of base64)", False),
    "9901": VendorCode(InvalidImage, "face2 could not decode the image", False),
    "9800": VendorCode(
        VendorAuthFailed,
        "face2 refused the request signature (check app_id and app_secret or the SM2 key)",
        False,
    ),
    "9801": VendorCode(
        VendorAuthFailed,
        "face2 refused the signing parameters (appId, signType, signData or timestamp)",
        False,
    ),
    "9802": VendorCode(
        VendorAuthFailed,
        "face2 refused the request time: facegate's clock and face2's differ by more than face2 accepts",
        False,
    ),
}

# A non-2xx answer without a documented code: the doc lists no HTTP statuses, so the
# status is all there is (429 and non-JSON 5xx are handled by ``json_body``).
HTTP_STATUSES: Mapping[str, VendorCode] = {
    "401": VendorCode(VendorAuthFailed, "face2 refused access (HTTP {code})", False),
    "403": VendorCode(VendorAuthFailed, "face2 refused access (HTTP {code})", False),
    # "Payment Required": the one status that means the account, not the request.
    "402": VendorCode(VendorQuotaExhausted, "face2 says the account's quota is exhausted (HTTP 402)", False),
}
_HTTP_SERVER_ERROR = VendorCode(VendorUnavailable, "face2 answered HTTP {code}", None)
_HTTP_REFUSED = VendorCode(VendorRejected, "face2 refused the request (HTTP {code})", False)

# Which order a detect box was read in (see the module docstring).
BoxReading = Literal["labelled", "example"]


def _str(v: object) -> object:
    # A secret written by hand may say "version": 1.
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def _upper(v: object) -> object:
    return v.strip().upper() if isinstance(v, str) else v


class Face2Credentials(Credentials):
    # A validation error must not carry the rejected value: it would be a key.
    model_config = ConfigDict(hide_input_in_errors=True)

    app_id: Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]
    app_secret: Annotated[str, StringConstraints(min_length=1)]
    sign_type: Annotated[Literal["SHA256", "SM2"], BeforeValidator(_upper)] = "SHA256"
    # base64 of the 32-byte SM2 private scalar; required when sign_type is SM2.
    sm2_private_key: str | None = Field(default=None, validate_default=True)
    # face2's own SM2 public key (hex or base64 of 04‖x‖y). Only needed if face2
    # ever signs its responses with SM2; the documented responses are unsigned.
    sm2_vendor_public_key: str | None = None
    version: Annotated[str, BeforeValidator(_str), StringConstraints(min_length=1)] = "1"

    # Messages name the problem, never the value: they can end up in logs.
    @field_validator("sm2_private_key")
    @classmethod
    def _private_key(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or not v.strip():
            if info.data.get("sign_type") == "SM2":
                raise ValueError("sign_type SM2 needs sm2_private_key")
            return None
        signing.sm2_public_key(v)  # raises ValueError if it is not a usable key
        return v.strip()

    @field_validator("sm2_vendor_public_key")
    @classmethod
    def _vendor_key(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        signing.parse_sm2_public_key(v)
        return v.strip()


class Face2Vendor(HttpDetect, HttpCompare, HttpFeatures):
    id: ClassVar[str] = VENDOR
    name: ClassVar[str] = "face2 API"
    operations: ClassVar[frozenset[Operation]] = frozenset(PATHS)
    credentials_model = Face2Credentials
    # "base64数据不大于2MB": 2 MB is read as 2,000,000 so that neither reading of
    # "MB" can refuse what we send; an image between that and 2 MiB costs one
    # re-encode. The doc names no formats: JPEG, PNG and BMP are what every image
    # stack behind an ArcFace service decodes; WebP (not guaranteed there) is
    # re-encoded to JPEG by images.fit instead of risking a 9901.
    limits: ClassVar[ImageLimits] = ImageLimits(formats=frozenset({"JPEG", "PNG", "BMP"}), max_base64_bytes=2_000_000)
    default_endpoint: ClassVar[str | None] = None
    accepts_urls: ClassVar[bool] = False

    @property
    def creds(self) -> Face2Credentials:
        assert isinstance(self.credentials, Face2Credentials)
        return self.credentials

    # --- requests ----------------------------------------------------------------

    def build_detect(self, image: ImageRef, max_faces: int, ctx: CallContext) -> HttpRequest:
        # Always sent: face2's default is 1 (only the largest face).
        return self._request(Operation.DETECT, {"image": _base64(image), "max_face_num": max_faces}, ctx)

    def build_compare(self, image1: ImageRef, image2: ImageRef, ctx: CallContext) -> HttpRequest:
        return self._request(Operation.COMPARE, {"image1": _base64(image1), "image2": _base64(image2)}, ctx)

    def build_features(self, image: ImageRef, ctx: CallContext) -> HttpRequest:
        return self._request(Operation.FEATURES, {"image": _base64(image)}, ctx)

    def envelope(self, data: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """The signed parameters of one call."""
        creds = self.creds
        params: dict[str, Any] = {
            "appId": creds.app_id,
            "version": creds.version,
            "signType": creds.sign_type,
            "encType": "plain",
            "timestamp": int(ctx.now.timestamp()),
            "data": data,
        }
        text = signing.string_to_sign(params, creds.app_secret)
        if creds.sign_type == "SM2":
            assert creds.sm2_private_key is not None  # the credentials validator ensures it
            # SM2 signatures are randomised (the doc: 每次不同), so an SM2 request is
            # byte-identical under a frozen context except for signData.
            params["signData"] = signing.sign_sm2(text, creds.sm2_private_key)
        else:
            params["signData"] = signing.sign_sha256(text)
        return params

    def _request(self, op: Operation, data: dict[str, Any], ctx: CallContext) -> HttpRequest:
        params = self.envelope(data, ctx)
        # Sorted and compact: one fixed byte sequence per request (golden tests).
        body = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return HttpRequest(
            method="POST",
            url=self.endpoint + PATHS[op],
            headers={"Content-Type": "application/json;charset=UTF-8", "Accept": "application/json"},
            body=body,
        )

    # --- responses ---------------------------------------------------------------

    def parse_detect(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> DetectOutcome:
        data = self._data(response)
        locations = data.get("locations")
        if not isinstance(locations, list):
            raise _bad("face2's locate answer has no locations list")
        read = [_face(loc) for loc in locations]
        for reading in sorted({r for _, r in read}):
            count("Face2BoxReading", "reading", reading, sum(r == reading for _, r in read))
        return DetectOutcome(faces=[f for f, _ in read], vendor_request_id=_request_id(data), billed=True)

    def parse_compare(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> CompareOutcome:
        data = self._data(response)
        score = data.get("score")
        if not _is_number(score) or score < 0:
            raise _bad("face2's verify answer has no valid score")
        is_match = data.get("is_match")
        if is_match is not None and not isinstance(is_match, bool):
            raise _bad("face2's verify answer has a non-boolean is_match")
        return CompareOutcome(
            similarity=similarity_from_distance(float(score)),
            vendor_score=float(score),
            thresholds=THRESHOLDS,
            vendor_request_id=_request_id(data),
            billed=True,
            vendor_match=is_match,
            inclusive=False,  # our own lines; strict is never laxer at the boundary
            scale_documented=False,  # the distance's scale is our assumption
        )

    def parse_features(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> FeaturesOutcome:
        data = self._data(response)
        features = data.get("features")
        # A different length means a different model: mixing its vectors with
        # ArcFace-512 ones would silently compare nonsense.
        if not isinstance(features, list) or len(features) != FEATURE_DIMENSION:
            raise _bad(f"face2's features answer is not {FEATURE_DIMENSION} numbers")
        if not all(_is_number(x) for x in features):
            raise _bad(f"face2's features answer is not {FEATURE_DIMENSION} numbers")
        return FeaturesOutcome(
            embedding=[float(x) for x in features],
            model=MODEL,
            vendor_request_id=_request_id(data),
            billed=True,
        )

    def _data(self, response: HttpResponse) -> dict[str, Any]:
        """``data`` of a successful answer; the right error for anything else."""
        body = json_body(response, VENDOR)
        if not isinstance(body, dict):
            raise _bad("face2 answered with JSON that is not an object")
        self._check_signature(response.body, body)
        code = _code(body.get("code"))
        message = _vendor_message(body)
        if code is not None and code in CODES:
            raise_for_code(CODES, code, vendor=VENDOR, vendor_message=message)
        if not 200 <= response.status < 300:
            status = str(response.status)
            raise_for_code(
                HTTP_STATUSES,
                status,
                vendor=VENDOR,
                vendor_message=message,
                unknown=_HTTP_SERVER_ERROR if response.status >= 500 else _HTTP_REFUSED,
                vendor_code=code or status,
            )
        if code is None:
            raise _bad("face2 answered without a code")
        if code != "0":
            # An undocumented code: a VendorError of unknown billing.
            raise_for_code(CODES, code, vendor=VENDOR, vendor_message=message)
        data = body.get("data")
        if not isinstance(data, dict):
            raise _bad("face2's success answer has no data object")
        return data

    def _check_signature(self, raw: bytes, body: dict[str, Any]) -> None:
        sign_type = body.get("signType")
        if sign_type in (None, "plain"):  # unsigned, as every documented response is
            return
        sign_data = body.get("signData")
        if sign_type not in ("SHA256", "SM2") or not isinstance(sign_data, str) or not sign_data:
            raise _bad("face2's response claims a signature facegate cannot check")
        # Re-read with numbers kept as sent: the signature covers their exact text.
        literal = json.loads(raw, parse_float=signing.JsonNumber, parse_int=signing.JsonNumber)
        text = signing.string_to_sign(literal, self.creds.app_secret)
        if sign_type == "SHA256":
            ok = hmac.compare_digest(signing.sign_sha256(text).encode(), sign_data.encode())
        else:
            key = self.creds.sm2_vendor_public_key
            if key is None:
                raise _bad("face2 signed its response with SM2; set sm2_vendor_public_key in the face2 secret")
            ok = signing.verify_sm2(text, sign_data, key)
        if not ok:
            raise _bad("face2's response signature does not verify")


# --- helpers ---------------------------------------------------------------------------


def similarity_from_distance(distance: float) -> float:
    """face2's distance (0 = identical, 2 = opposite unit vectors) on facegate's 0..1.

    Rounded so a distance on a threshold lands exactly on it (1 − 1.1/2 is
    0.44999999999999996 in floating point); rounding keeps the order."""
    return round(min(1.0, max(0.0, 1.0 - distance / 2.0)), 12)


def _base64(ref: ImageRef) -> str:
    if ref.image is None:
        raise InvalidRequest("vendor 'face2' takes images as bytes only (no URLs or face tokens)", vendor=VENDOR)
    return ref.image.base64


def _bad(message: str) -> VendorBadResponse:
    return VendorBadResponse(message, vendor=VENDOR, billed=None)


def _is_number(x: object) -> TypeIs[int | float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _code(v: object) -> str | None:
    # The doc's table types code as string; its examples send the number 0.
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return str(int(v.strip()))
    return None


def _vendor_message(body: dict[str, Any]) -> str | None:
    # Face APIs put the message in data.msg, the feature-library APIs in msg.
    data = body.get("data")
    for candidate in ((data.get("msg") if isinstance(data, dict) else None), body.get("msg")):
        if (message := text(candidate)) is not None:
            return message
    return None


def _request_id(data: dict[str, Any]) -> str | None:
    return request_id(data.get("requestId"))


def _face(loc: object) -> tuple[DetectedFace, BoxReading]:
    """One location as a box, and which reading of it is a box (module docstring)."""
    if not (isinstance(loc, list) and len(loc) == 4 and all(_is_number(v) for v in loc)):
        raise _bad("face2 sent a face location that is not four numbers")
    top, right, bottom, left = (round(v) for v in loc)  # as labelled
    if right > left and bottom > top:
        return DetectedFace(left=left, top=top, width=right - left, height=bottom - top), "labelled"
    left, top, right, bottom = (round(v) for v in loc)  # as in the doc's example
    if right > left and bottom > top:
        return DetectedFace(left=left, top=top, width=right - left, height=bottom - top), "example"
    raise _bad(
        "face2 sent a face location that is a box neither as [top, right, bottom, left] "
        "nor as [left, top, right, bottom] (empty or inverted)"
    )
