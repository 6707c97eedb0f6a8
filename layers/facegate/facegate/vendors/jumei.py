"""聚美智数 人脸身份证比对 (ID card + face verification) on the Tencent Cloud marketplace.

One operation, verify-identity: a name, an 18-character resident ID number and a
photo go to ``POST /release/idcardface/validate`` (form-encoded, like every sample
in the vendor doc); the vendor checks name and number against the public-security
record and compares the photo with the record's ID photo. Authentication is the
Tencent marketplace key pair (``facegate.signing.tencent_market``).

Scores: ``data.score`` is already a similarity in 0..1. The doc's guidance is the
vendor's verdict: "0.40以下 系统判断为不同人; 0.40-0.44 不能确定是否为同一人 ; 0.45及以上
系统判断为同一人". So ``similarity = score`` and ``uncertain_band = [0.40, 0.45)``
carries that verdict: below 0.40 no_match, from 0.40 (inclusive) up to 0.45
uncertain, 0.45 and above (及以上: inclusive) match. ``normal`` follows it.

* ``low`` is 0.45 too: verdict *or* 0.45, which is the verdict; a score in the band
  stays "uncertain" and below it "no_match". A lower bar would contradict the vendor
  (a stage may still lower ``low`` with ``FACEGATE_THRESHOLDS``, and then ``low``
  accepts what clears it).
* ``high`` is 0.55 (an assumption: a margin of two band-widths above the vendor's
  own boundary): verdict *and* ≥ 0.55, so a band score is "no_match" there.

Billing (an assumption; the doc is silent): the product is billed per answered
check, so every ``code: 200`` answer is ``billed=True`` whatever its ``incorrect``
code (the public-security check ran), and everything else (``code`` 400/500/501/
999, gateway 401/403/429) is ``billed=False``.

Responses (``HTTP 200`` with a JSON ``code``, unless the gateway itself answers):

| code | incorrect | doc text | facegate |
|---|---|---|---|
| 200 | 100 | 比对成功 | outcome, similarity = score |
| 200 | 101 | 身份证号码姓名不一致 | IDENTITY_MISMATCH |
| 200 | 102 | 库中无此号 | IDENTITY_NOT_FOUND |
| 200 | 103 | 身份核验成功,数据非法 | VENDOR_REJECTED |
| 200 | 104 | 数据非法 | VENDOR_REJECTED |
| 200 | 106 | 人脸识别系统异常 | VENDOR_UNAVAILABLE |
| 200 | 107 | 照片质量不合格 | POOR_IMAGE_QUALITY |
| 200 | 108 | 上传图片文件过大 | IMAGE_TOO_LARGE |
| 200 | 109 | 身份核验成功,库中无照片 | IDENTITY_NOT_FOUND |
| 200 | 110 | 身份核验成功,特征提取失败 | NO_FACE |
| 200 | 111 | 身份核验成功,检测到多于一张人脸 | MULTIPLE_FACES |
| 200 | 112 | 身份核验成功,图片不合法 | INVALID_IMAGE |
| 200 | 113 | 人像比对服务异常 | VENDOR_UNAVAILABLE |
| 200 | other | — | VENDOR_ERROR |
| 400 | — | 参数错误 | VENDOR_REJECTED |
| 500 | — | 系统维护,请稍候再试 | VENDOR_UNAVAILABLE |
| 501 | — | 官方数据源维护,请稍候再试 | VENDOR_UNAVAILABLE |
| 999 | — | 其他,以实际返回为准 | VENDOR_ERROR |
| other | — | — | VENDOR_ERROR |

Tencent API gateway answers (no ``code``; body ``{"message": ...}``): HTTP 401 and
403 are the key-pair failures (bad signature, unknown or unbound key, X-Date
missing or more than 900 s off, no usage plan) → VENDOR_AUTH_FAILED; 429 →
VENDOR_RATE_LIMITED. Tencent documents no separate status or code for an exhausted
marketplace package, and matching on message text is not allowed, so exhaustion
cannot be told apart from throttling and surfaces as VENDOR_RATE_LIMITED too.
Other gateway statuses: 5xx → VENDOR_UNAVAILABLE, 4xx → VENDOR_REJECTED.

Why 109 is IDENTITY_NOT_FOUND: the name and number matched, but the record holds no
photo to compare with. Nothing about the request or the vendor can change that, and
every vendor asks the same public-security record, so it is the identity's problem
(a 422, no failover). Why 110 is NO_FACE: the vendor found no face it could extract
features from in the photo it was sent; the caller's fix is a photo with a clear face.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import StringConstraints

from facegate.errors import (
    IdentityMismatch,
    IdentityNotFound,
    ImageTooLarge,
    InvalidImage,
    InvalidRequest,
    MultipleFaces,
    NoFace,
    PoorImageQuality,
    VendorAuthFailed,
    VendorBadResponse,
    VendorError,
    VendorRejected,
    VendorUnavailable,
)
from facegate.identity import mask_id_number, mask_name, validate_id_number, validate_name
from facegate.images import ImageLimits
from facegate.models import Operation, SecurityLevel
from facegate.signing import tencent_market
from facegate.vendors.base import (
    CallContext,
    CompareOutcome,
    Credentials,
    HttpRequest,
    HttpResponse,
    HttpVerifyIdentity,
    Identity,
    ImageRef,
)
from facegate.vendors.wire import VendorCode, form_body, json_body, raise_for_code, text

VENDOR = "jumei"
PATH = "/release/idcardface/validate"

THRESHOLDS: Mapping[SecurityLevel, float] = {"low": 0.45, "normal": 0.45, "high": 0.55}
UNCERTAIN_BAND = (0.40, 0.45)

# Printable ASCII without spaces, quotes, commas or backslashes: these values are
# copied into the Authorization header and would otherwise change its structure.
_HeaderSafe = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[!#-+\--\[\]-~]+$")]


class JumeiCredentials(Credentials):
    secret_id: _HeaderSafe
    secret_key: Annotated[str, StringConstraints(min_length=1)]
    source: _HeaderSafe = "market"


@dataclass(frozen=True)
class _Sent:
    """What the parser needs to scrub the vendor's messages: the values just sent."""

    name: str
    id_number: str

    def __repr__(self) -> str:
        return f"_Sent(name={mask_name(self.name)!r}, id_number={mask_id_number(self.id_number)!r})"


# Every documented ``incorrect`` but 100 (比对成功, the success path). They come inside
# a code-200 answer: the public-security check ran, so each is billed.
SUCCESS_INCORRECT = "100"
INCORRECT: Mapping[str, VendorCode] = {
    "101": VendorCode(IdentityMismatch, "the name does not match the ID number", True),
    "102": VendorCode(IdentityNotFound, "the ID number is not in the public-security record", True),
    "103": VendorCode(VendorRejected, "the vendor verified the identity but refused the photo comparison", True),
    "104": VendorCode(VendorRejected, "the vendor refused the request data before checking the identity", True),
    "106": VendorCode(VendorUnavailable, "the vendor's face recognition system failed", True),
    "107": VendorCode(PoorImageQuality, "the photo's quality is too poor for comparison", True),
    "108": VendorCode(ImageTooLarge, "the photo is too large for the vendor", True),
    "109": VendorCode(IdentityNotFound, "the public-security record holds no photo for this identity", True),
    "110": VendorCode(NoFace, "no face could be extracted from the photo", True),
    "111": VendorCode(MultipleFaces, "the photo shows more than one face", True),
    "112": VendorCode(InvalidImage, "the vendor could not read the photo as an image", True),
    "113": VendorCode(VendorUnavailable, "the vendor's portrait comparison service failed", True),
}

# Every documented top-level ``code`` but 200: refused before any check, not billed.
CODES: Mapping[str, VendorCode] = {
    "400": VendorCode(VendorRejected, "the vendor rejected the request parameters", False),
    "500": VendorCode(VendorUnavailable, "the vendor is under maintenance", False),
    "501": VendorCode(VendorUnavailable, "the vendor's official data source is under maintenance", False),
    "999": VendorCode(VendorError, "the vendor reported an unspecified error", False),
}
# Undocumented: at the top level refused before any check; inside a code-200 answer billed.
_UNKNOWN_CODE = VendorCode(VendorError, "jumei answered with an undocumented code", False)
_UNKNOWN_INCORRECT = VendorCode(VendorError, "jumei answered with an undocumented code", True)

# 18-character and 15-digit ID-number-like runs, for scrubbing vendor messages.
_ID_LIKE = re.compile(r"(?<![0-9])(?:[0-9]{17}[0-9Xx]|[0-9]{15})(?![0-9Xx])")


class JumeiVendor(HttpVerifyIdentity):
    id: ClassVar[str] = VENDOR
    name: ClassVar[str] = "聚美智数 ID card + face verification (Tencent Cloud market)"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.VERIFY_IDENTITY})
    credentials_model: ClassVar[type[Credentials]] = JumeiCredentials
    default_endpoint: ClassVar[str] = "https://service-8ce49wg7-1305308687.sh.apigw.tencentcs.com"
    accepts_urls: ClassVar[bool] = True
    # The doc states no size limit but has code 108 (file too large), and a 108 comes
    # inside a billed code-200 answer. Portraits compared with an ID photo need far
    # less than 1 MB, and images.fit() re-encodes anything larger, so 1 MB keeps
    # well clear of the vendor's unknown cap at no cost in accuracy. Formats: the
    # three every public-security face service takes; fit() turns others into JPEG.
    limits: ClassVar[ImageLimits] = ImageLimits(formats=frozenset({"JPEG", "PNG", "BMP"}), max_bytes=1024 * 1024)

    credentials: JumeiCredentials

    # --- request ------------------------------------------------------------------------

    def build_verify_identity(self, identity: Identity, image: ImageRef, ctx: CallContext) -> HttpRequest:
        # Validated again here (cheap, pure): whatever the caller did, nothing
        # malformed reaches a vendor that bills per call.
        name = validate_name(identity.name)
        id_number = validate_id_number(identity.id_number, today=ctx.now.date())
        fields: list[tuple[str, str]] = [("idcard_number", id_number)]
        if image.image is not None:
            fields.append(("imgBase64", image.image.base64))
        elif image.url is not None:
            fields.append(("imgUrl", image.url))
        else:
            raise InvalidRequest("jumei takes the photo as base64 or a URL, not as a face token", vendor=VENDOR)
        fields.append(("name", name))
        # urlencode: UTF-8 percent-encoding, space as "+", the form the doc's samples send.
        body = form_body(fields)
        creds = self.credentials
        headers = {
            **tencent_market.headers(creds.secret_id, creds.secret_key, creds.source, ctx.now),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        return HttpRequest(
            method="POST", url=self.endpoint + PATH, headers=headers, body=body, state=_Sent(name, id_number)
        )

    # --- response -----------------------------------------------------------------------

    def parse_verify_identity(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> CompareOutcome:
        sent = request.state if isinstance(request.state, _Sent) else None
        if response.status in (401, 403):
            message = _gateway_message(response, sent)
            raise VendorAuthFailed(
                "the Tencent marketplace gateway refused jumei's credentials",
                vendor=VENDOR,
                vendor_code=str(response.status),
                vendor_message=message,
                billed=False,
            )
        body = json_body(response, VENDOR)  # 429 and non-JSON bodies are handled there
        if not isinstance(body, dict):
            raise VendorBadResponse("jumei answered with JSON that is not an object", vendor=VENDOR, billed=None)
        code = _as_int(body.get("code"))
        if code is None:
            # No vendor code: the gateway (or something in front of it) answered.
            message = _scrub(body.get("message") or body.get("msg"), sent)
            if response.status >= 400:
                error = VendorUnavailable if response.status >= 500 else VendorRejected
                raise error(
                    f"jumei's gateway answered HTTP {response.status}",
                    vendor=VENDOR,
                    vendor_code=str(response.status),
                    vendor_message=message,
                    billed=False,
                )
            raise VendorBadResponse("jumei's answer has no result code", vendor=VENDOR, billed=None)

        task_no = body.get("taskNo")
        if code != 200:
            raise_for_code(
                CODES,
                str(code),
                vendor=VENDOR,
                vendor_message=_scrub(body.get("msg"), sent),
                unknown=_UNKNOWN_CODE,
            )

        data = body.get("data")
        if not isinstance(data, dict):
            raise VendorBadResponse("jumei's answer has no data", vendor=VENDOR, billed=True)
        incorrect = _as_int(data.get("incorrect"))
        if incorrect is None:
            raise VendorBadResponse("jumei's answer has no incorrect code", vendor=VENDOR, billed=True)
        if str(incorrect) != SUCCESS_INCORRECT:
            raise_for_code(
                INCORRECT,
                str(incorrect),  # the vendor code: 100–113 never collide with the top-level codes
                vendor=VENDOR,
                vendor_message=_scrub(data.get("msg"), sent),
                unknown=_UNKNOWN_INCORRECT,
            )

        score = data.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise VendorBadResponse("jumei's score is missing or outside 0..1", vendor=VENDOR, billed=True)
        return CompareOutcome(
            similarity=float(score),
            vendor_score=float(score),
            thresholds=THRESHOLDS,
            vendor_request_id=None if task_no is None else str(task_no),
            billed=True,
            uncertain_band=UNCERTAIN_BAND,
            inclusive=True,  # 0.45及以上 系统判断为同一人
        )


def _as_int(value: Any) -> int | None:
    """The vendor's codes are numbers in the doc; accept their string forms too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _gateway_message(response: HttpResponse, sent: _Sent | None) -> str | None:
    import json

    try:
        body = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        return None
    return _scrub(body.get("message"), sent) if isinstance(body, dict) else None


def _scrub(raw: Any, sent: _Sent | None) -> str | None:
    """The vendor's message with the name and ID number just sent (and any
    ID-number-like run of digits) masked; ``errors`` removes credentials and bounds it."""
    message = text(raw)
    if message is None:
        return None
    if sent is not None:
        message = message.replace(sent.id_number, mask_id_number(sent.id_number))
        if len(sent.name) >= 2:
            message = message.replace(sent.name, mask_name(sent.name))
    message = _ID_LIKE.sub(lambda m: mask_id_number(m.group(0)), message)
    return message
