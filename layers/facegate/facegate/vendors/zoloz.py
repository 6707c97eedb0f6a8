"""ZOLOZ face compare: ``POST /api/v1/zoloz/facecompare/compare``.

One JSON request (``bizId``, ``face1.content``, ``face2.content`` in base64,
``sourceOfFace2``), signed with the merchant's RSA key over
``POST <uri>\\n<clientId>.<Request-Time>.<body>`` (see ``facegate.signing.zoloz``),
optionally RSA_AES-encrypted. Every answer is signed by ZOLOZ the same way over its
``Response-Time``, and is verified *before anything in it is read*: an unsigned or
tampered "samePerson: true" must never become a match. Encrypted answers are then
decrypted with the key from their own ``Encrypt`` header (wrapped with the merchant's
public key)::

    {"result": {"resultStatus": "S", "resultCode": "SUCCESS", "resultMessage": "success"},
     "transactionId": "G000000005FID20200304000000000001570702",
     "score": 88.2, "samePerson": true}

``result.resultCode`` (table ``ERRORS``) says whether the call was served;
``resultStatus`` is S (success), F (failed) or U (unknown, e.g. SYSTEM_ERROR).

Normalisation: ``score`` is 0..100, so similarity = score / 100. ZOLOZ gives its
own verdict, ``samePerson``, at a threshold it does not publish (its product page
says the default threshold has a false accept rate of 1 in 100,000), so at
``normal`` the decision is ZOLOZ's and ``thresholds["normal"]`` (0.70) is only the
reported line and the fallback when ``samePerson`` is absent. ``low`` (0.60) and
``high`` (0.80) bracket it; they are our choice, not ZOLOZ's, and
``FACEGATE_THRESHOLDS`` overrides them per stage. ``high`` is samePerson *and* a
score above 0.80; ``low`` is samePerson *or* a score above 0.60 (the score's 0..100
scale is documented, so ``low`` may accept a "not the same person" scored above its
line). The doc gives no line of its own, so every threshold is strict (``>``):
never laxer at the boundary than either reading.

Billing (an assumption; ZOLOZ publishes no per-code rule): a SUCCESS is billed; a
gateway refusal (auth, parameters, traffic, quota: status F before the product
runs) is not; UNABLE_GET_IMAGE, SYSTEM_ERROR, PROCESS_TIMEOUT and unknown codes may
have been, so they say None.

Endpoint: the Singapore production base URI from ZOLOZ's "Understand service
endpoints" page; Hong Kong (https://hk-production-api.zoloz.net) and Indonesia
(https://id-production-api.zoloz.com) go in the secret's ``endpoint``.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, field_validator

from facegate.errors import (
    ImageTooLarge,
    InvalidRequest,
    NoFace,
    VendorAuthFailed,
    VendorBadResponse,
    VendorNotConfigured,
    VendorQuotaExhausted,
    VendorRateLimited,
    VendorRejected,
    VendorUnavailable,
)
from facegate.images import ImageLimits
from facegate.models import Operation, SecurityLevel
from facegate.signing import zoloz as signing
from facegate.vendors.base import (
    CallContext,
    CompareOutcome,
    Credentials,
    HttpCompare,
    HttpRequest,
    HttpResponse,
    ImageRef,
)
from facegate.vendors.wire import VendorCode, header, percent, raise_for_code, request_id, text

if TYPE_CHECKING:
    from facegate.transport import Transport

PATH = "/api/v1/zoloz/facecompare/compare"
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
ENCRYPTED_CONTENT_TYPE = "text/plain; charset=UTF-8"

# "face1.content 和 face2.content 两张图片的总大小不能超过5MB": a cap on the two base64
# fields together. "5MB" may be 5*10^6 or 5*2^20 bytes; 5,000,000 satisfies both.
MAX_TOTAL_BASE64 = 5_000_000
# The service splits ``total_bytes`` between the images and compares it with their
# raw size; raw is 3/4 of base64, so this keeps the two fields under the cap.
MAX_TOTAL_RAW = MAX_TOTAL_BASE64 * 3 // 4

# bizId: "32B" max.
MAX_BIZ_ID = 32

_SCALE = 100.0

THRESHOLDS: Mapping[SecurityLevel, float] = {"low": 0.60, "normal": 0.70, "high": 0.80}


class ZolozCredentials(Credentials):
    """The secret: ``client_id``, ``merchant_private_key`` (PEM), ``zoloz_public_key``
    (PEM), ``encrypt``. Keys are parsed here, so a bad key fails when the secret is
    loaded (as VendorNotConfigured naming the field), not on the first call."""

    # Printable ASCII without spaces: it goes into a header and into the signed content.
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")]
    merchant_private_key: SecretStr
    zoloz_public_key: Annotated[str, Field(min_length=1)]
    encrypt: bool = False

    @field_validator("merchant_private_key")
    @classmethod
    def _private_key(cls, v: SecretStr) -> SecretStr:
        signing.load_private_key(v.get_secret_value())
        return v

    @field_validator("zoloz_public_key")
    @classmethod
    def _public_key(cls, v: str) -> str:
        signing.load_public_key(v)
        return v


class ZolozOptions(BaseModel):
    """The request's ``options.zoloz``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # sourceOfFace2: "SELFIE or 00000001007 or valid docType" (ZOLOZ's compare API
    # page): whether image2 is a live selfie or the portrait on an ID document of
    # that 11-digit ZOLOZ docType. A wrong value makes the comparison inaccurate.
    source_of_face2: Annotated[str, StringConstraints(pattern=r"^(SELFIE|[0-9]{11})$")] = "SELFIE"


# Every documented resultCode except SUCCESS.
# Common codes: docs.zoloz.com/zoloz/saas/apireference/errorhandling; API-specific
# ones: the compare API page (vendor-docs 003).
ERRORS: Mapping[str, VendorCode] = {
    # --- compare-specific
    # "bizId为null或空字符串; livenessDetectMode不是NONE或NORMAL": fields we always fill
    # correctly, so this is our bug or an unannounced rule, not the caller's doing.
    "INVALID_ARGUMENT": VendorCode(VendorRejected, "zoloz rejected the request arguments", False),
    # "Base64为null/空/损坏; 不是JPG格式; 图片中未检测到人脸". facegate decoded both
    # images fully and sends JPEG only, so the cause left is that no face was found.
    "UNABLE_GET_IMAGE": VendorCode(NoFace, "zoloz found no usable face in one of the images", None),
    "SYSTEM_ERROR": VendorCode(VendorUnavailable, "zoloz reported a system error", None),  # status U
    # --- common: the request itself, as we built it
    "PARAM_MISSING": VendorCode(VendorRejected, "zoloz reported a missing parameter", False),
    "PARAM_ILLEGAL": VendorCode(VendorRejected, "zoloz reported an illegal parameter", False),
    "MSG_PARSE_ERROR": VendorCode(VendorRejected, "zoloz could not parse the request", False),
    # --- common: our credentials or account
    "SIGNATURE_INVALID": VendorCode(VendorAuthFailed, "zoloz rejected the request signature", False),
    "KEY_NOT_FOUND": VendorCode(VendorAuthFailed, "zoloz has no key registered for this client", False),
    "MERCHANT_NOT_FOUND": VendorCode(VendorAuthFailed, "zoloz does not know this client id", False),
    "OAUTH_FAIL": VendorCode(VendorAuthFailed, "zoloz refused the authorization", False),
    "OAUTH_RESOURCE_CODE_FAIL": VendorCode(VendorAuthFailed, "zoloz refused the authorization (no code)", False),
    "ACCESS_DENIED": VendorCode(VendorAuthFailed, "this zoloz account has no access to face compare", False),
    # The endpoint (site) does not serve this API: configuration, and another vendor may serve.
    "NO_INTERFACE_DEF": VendorCode(VendorNotConfigured, "the zoloz endpoint does not offer compare", False),
    "REQUEST_TRAFFIC_EXCEED_LIMIT": VendorCode(VendorRateLimited, "zoloz is rate limiting requests", False),
    "PRODUCT_QUOTA_LIMIT": VendorCode(VendorQuotaExhausted, "the zoloz product quota is used up", False),
    # Status F: ZOLOZ gave up, so no result exists; whether it counted the call is unknown.
    "PROCESS_TIMEOUT": VendorCode(VendorUnavailable, "zoloz timed out processing the request", None),
}
SUCCESS_CODE = "SUCCESS"
# Undocumented codes: U means ZOLOZ does not know the outcome (retryable); anything
# else is a refusal we cannot explain.
_UNKNOWN_CODE = VendorCode(VendorRejected, "zoloz answered with an undocumented code", None)
_UNKNOWN_CODE_STATUS_U = VendorCode(
    VendorUnavailable, "zoloz answered with an undocumented code (status unknown)", None
)


@dataclass(frozen=True)
class _State:
    """What the parser needs from the request it reads the reply to. Never logged."""

    aes_key: bytes | None = field(default=None, repr=False)


class ZolozVendor(HttpCompare):
    id: ClassVar[str] = "zoloz"
    name: ClassVar[str] = "ZOLOZ face compare"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.COMPARE})
    credentials_model: ClassVar[type[Credentials]] = ZolozCredentials
    options_model: ClassVar[type[BaseModel]] = ZolozOptions
    # The field description lists JPG/JPEG/PNG/BMP, but the result codes list "不是JPG格式"
    # (not JPG) under UNABLE_GET_IMAGE and the product page asks for JPG: send JPEG
    # only; images.fit re-encodes the rest (flattening PNG alpha on the way).
    limits: ClassVar[ImageLimits] = ImageLimits(
        formats=frozenset({"JPEG"}), max_base64_bytes=MAX_TOTAL_BASE64, total_bytes=MAX_TOTAL_RAW
    )
    default_endpoint: ClassVar[str] = "https://sg-production-api.zoloz.com"

    def __init__(
        self,
        credentials: Credentials,
        transport: Transport,
        *,
        aes_key_source: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        super().__init__(credentials, transport)
        # The RSA_AES key must be secret, so it does not come from ctx.nonce (which is
        # not); tests inject a fixed source to get byte-identical bodies.
        self._aes_key_source = aes_key_source

    # --- request --------------------------------------------------------------------

    def build_compare(self, image1: ImageRef, image2: ImageRef, ctx: CallContext) -> HttpRequest:
        creds = self._credentials()
        face1, face2 = _content(1, image1), _content(2, image2)
        if len(face1) + len(face2) > MAX_TOTAL_BASE64:
            raise ImageTooLarge("the two images together are larger than ZOLOZ's 5 MB limit", vendor=self.id)
        options = ctx.options if isinstance(ctx.options, ZolozOptions) else ZolozOptions()
        payload = {
            "bizId": biz_id(ctx.request_id),
            # userId is optional and identifies a person: never sent.
            "face1": {"content": face1},
            "face2": {"content": face2},
            "sourceOfFace2": options.source_of_face2,
        }
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=True)

        headers = {"Content-Type": JSON_CONTENT_TYPE}
        aes_key = None
        if creds.encrypt:
            aes_key = self._aes_key_source(signing.AES_KEY_BYTES)
            body = signing.encrypt_body(body, aes_key)
            headers["Content-Type"] = ENCRYPTED_CONTENT_TYPE
        request_time = signing.format_time(ctx.now)
        signature = signing.sign(
            signing.content_to_sign(PATH, creds.client_id, request_time, body),
            creds.merchant_private_key.get_secret_value(),
        )
        headers |= {
            "Client-Id": creds.client_id,
            "Request-Time": request_time,
            "Signature": signing.signature_header(signature),
        }
        if aes_key is not None:
            headers["Encrypt"] = signing.encrypt_header(signing.wrap_key(aes_key, creds.zoloz_public_key))
        return HttpRequest("POST", self.endpoint + PATH, headers, body.encode("ascii"), state=_State(aes_key))

    def _credentials(self) -> ZolozCredentials:
        if not isinstance(self.credentials, ZolozCredentials):
            raise VendorNotConfigured("vendor 'zoloz' has no credentials configured", vendor=self.id)
        return self.credentials

    # --- response -------------------------------------------------------------------

    def parse_compare(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> CompareOutcome:
        creds = self._credentials()
        response_time = self._verified_time(response, creds)
        plaintext = self._plaintext(response, request, creds)
        try:
            body = json.loads(plaintext)
        except ValueError:
            raise VendorBadResponse("zoloz's signed response is not JSON", vendor=self.id) from None
        result = body.get("result") if isinstance(body, dict) else None
        if not isinstance(result, dict) or not isinstance(result.get("resultCode"), str):
            raise VendorBadResponse("zoloz's response has no result code", vendor=self.id)
        code = result["resultCode"]
        status = result.get("resultStatus")
        message = text(result.get("resultMessage"))

        if code != SUCCESS_CODE:
            unknown = _UNKNOWN_CODE_STATUS_U if status == "U" else _UNKNOWN_CODE
            raise_for_code(ERRORS, code, vendor=self.id, vendor_message=message, unknown=unknown)
        if status != "S" or response.status != 200:
            # "SUCCESS" with a failed status or HTTP error: one of them is lying; trust neither.
            raise VendorBadResponse(
                f"zoloz answered SUCCESS with status {status!r} and HTTP {response.status}",
                vendor=self.id,
                vendor_code=code,
                billed=None,
            )
        # A replayed old SUCCESS verifies too; only its (signed) time gives it away.
        # Fail closed: a time we cannot read cannot show the answer is fresh.
        if response_time is None:
            raise VendorBadResponse("zoloz's Response-Time is not in the documented format", vendor=self.id)
        # ZOLOZ's doc gives no window: ctx.response_max_skew_s is ours
        # (FACEGATE_ZOLOZ_RESPONSE_MAX_SKEW_S, default 300 s), generous because it only
        # has to catch replays, not clock drift.
        skew = abs((response_time - ctx.now).total_seconds())
        if skew > ctx.response_max_skew_s:
            raise VendorBadResponse(
                f"zoloz's signed response is {math.ceil(skew)} s from this request's time"
                f" (allowed {ctx.response_max_skew_s:g} s)",
                vendor=self.id,
            )

        score = percent(body.get("score"))
        if score is None:
            raise VendorBadResponse("zoloz's score is missing or not in 0..100", vendor=self.id, billed=True)
        same_person = body.get("samePerson")
        if same_person is not None and not isinstance(same_person, bool):
            raise VendorBadResponse("zoloz's samePerson is not a boolean", vendor=self.id, billed=True)
        return CompareOutcome(
            similarity=score / _SCALE,
            vendor_score=score,
            thresholds=THRESHOLDS,
            vendor_request_id=request_id(body.get("transactionId")) or request_id(result.get("transactionId")),
            billed=True,
            vendor_match=same_person,
            inclusive=False,  # our own lines; strict is never laxer at the boundary
        )

    def _verified_time(self, response: HttpResponse, creds: ZolozCredentials) -> datetime | None:
        """Check the response signature; return the parsed Response-Time (None if it
        does not parse). Unsigned or tampered: refused, unless it is a bare transport
        failure (5xx/429) that claims no result and so needs no trust."""
        sig_header = header(response.headers, "Signature")
        time_str = header(response.headers, "Response-Time")
        problem = None
        if sig_header is None or time_str is None:
            problem = "zoloz's response is not signed"
        else:
            try:
                signature = signing.parse_signature_header(sig_header)
                body = response.body.decode("utf-8")
            except ValueError:
                problem = "zoloz's response signature is malformed"
            else:
                content = signing.content_to_sign(PATH, creds.client_id, time_str, body)
                if not signing.verify(content, signature, creds.zoloz_public_key):
                    problem = "zoloz's response signature does not verify"
        if problem is not None:
            if response.status == 429:
                raise VendorRateLimited(
                    "zoloz is rate limiting requests", vendor=self.id, vendor_code="429", billed=False
                )
            if response.status >= 500:
                raise VendorUnavailable(
                    f"zoloz answered HTTP {response.status}",
                    vendor=self.id,
                    vendor_code=str(response.status),
                    billed=None,
                )
            raise VendorBadResponse(problem, vendor=self.id, billed=None)
        assert time_str is not None
        try:
            return signing.parse_time(time_str)
        except ValueError:
            return None

    def _plaintext(self, response: HttpResponse, request: HttpRequest, creds: ZolozCredentials) -> str:
        """The response body as JSON text, decrypted when ZOLOZ encrypted it."""
        text = response.body.decode("utf-8")  # verified above, so it decodes
        encrypt = header(response.headers, "Encrypt")
        state = request.state if isinstance(request.state, _State) else _State()
        try:
            if encrypt is not None:
                # The current SDK: the response carries its own key, wrapped with our public key.
                key = signing.unwrap_key(
                    signing.parse_encrypt_header(encrypt), creds.merchant_private_key.get_secret_value()
                )
                return signing.decrypt_body(text, key)
            if state.aes_key is not None and not text.lstrip().startswith("{"):
                # Older SDKs (and the Python one) decrypt an encrypted answer with the
                # request's own key; gateway errors come back as plain JSON.
                return signing.decrypt_body(text, state.aes_key)
        except ValueError:
            raise VendorBadResponse("zoloz's encrypted response does not decrypt", vendor=self.id) from None
        return text


# --- helpers ----------------------------------------------------------------------------


def biz_id(request_id: str) -> str:
    """``bizId`` (≤ 32 bytes, for tracing): facegate's request id (a 26-character
    ULID) as is, so ZOLOZ's portal and our results log share a key; anything longer
    or non-ASCII becomes a 32-hex-digit hash of it."""
    if request_id and request_id.isascii() and request_id.isprintable() and len(request_id) <= MAX_BIZ_ID:
        return request_id
    return hashlib.sha256(request_id.encode("utf-8")).hexdigest()[:MAX_BIZ_ID]


def _content(n: int, ref: ImageRef) -> str:
    if ref.image is None:
        # ZOLOZ takes only base64 content; the service fetches URLs before calling us.
        raise InvalidRequest(f"vendor 'zoloz' needs image{n} as image bytes", vendor="zoloz")
    return ref.image.base64
