"""快递100 Kuaidi100 cloud market (云市场) face compare (人脸对比).

Doc: vendor-docs/001_83b55f7f72fcb0bc.txt. One form-urlencoded POST to ``/api`` on
``cloud.kuaidi100.com``; the operation is chosen by ``secret_code`` (the 接口编号 of
the purchased API), the caller is authenticated by ``secret_key`` plus the static
``secret_sign`` (see ``facegate.signing.kuaidi100``). Each image is BASE64, a URL the
vendor fetches, or a FACE_TOKEN an earlier call returned. The answer is a 0-100
``score`` (a *string* in the doc's example, ``"80.00"``) and one face token per image.

Return codes
------------
The face-compare page documents only ``200`` (成功) and, as its failure example,
``400``. The other codes tabled below are Kuaidi100's documented platform codes
(信息代码含义, e.g. https://apifox.com/apidoc/project-514987/api-8590196, Kuaidi100's
own API docs): 400 参数错误, 500 服务器错误, 501 重复提交, 503 验证签名失败,
600 您不是合法的用户 (授权Key出错), 601 KEY已过期. That table is written for
Kuaidi100's enterprise API; we assume the cloud gateway, which signs with the same
key/secret pair, answers with the same codes. Any other code is ``VendorRejected``.

Billing: the doc says nothing. We assume a cloud-market package (套餐, N calls) is
debited only by a ``200``: documented errors are ``billed=False``, an unknown code
``billed=None`` (we cannot tell what it was).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from facegate.errors import (
    InvalidRequest,
    VendorAuthFailed,
    VendorBadResponse,
    VendorQuotaExhausted,
    VendorRejected,
    VendorUnavailable,
)
from facegate.images import ImageLimits
from facegate.models import Operation, SecurityLevel
from facegate.signing.kuaidi100 import secret_sign
from facegate.vendors.base import (
    CallContext,
    CompareOutcome,
    Credentials,
    HttpCompare,
    HttpRequest,
    HttpResponse,
    ImageRef,
)
from facegate.vendors.wire import VendorCode, form_body, json_body, raise_for_code, text

VENDOR_ID = "kuaidi100"
PATH = "/api"

FaceType = Literal["LIVE", "IDCARD", "WATERMARK", "CERT"]
LiveControl = Literal["NONE", "LOW", "NORMAL", "HIGH"]
ImageType = Literal["BASE64", "URL", "FACE_TOKEN"]


class Kuaidi100Credentials(Credentials):
    secret_key: str = Field(min_length=1)
    secret_secret: str = Field(min_length=1)
    # The 接口编号 of the purchased face-compare API, issued with the package.
    secret_code: str = Field(min_length=1)


class Kuaidi100Options(BaseModel):
    """The doc's per-image face type and liveness control, with its defaults.

    Values are the doc's exact upper-case words: the vendor matches them verbatim,
    so accepting ``live`` here would only move the error to the vendor.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_face_type: FaceType = "LIVE"
    compare_face_type: FaceType = "LIVE"
    source_live_control: LiveControl = "NONE"
    compare_live_control: LiveControl = "NONE"


# Normalised similarity thresholds. The doc recommends 80 (推荐阈值80分) and gives no
# others; ``low``/``high`` sit ten points either side, enough to move the false
# accept/reject balance noticeably without leaving the band the vendor recommends.
# The doc does not say whether a score of exactly 80 passes; the strict reading (>)
# is never laxer than the vendor's, whichever it meant, so every level is strict.
THRESHOLDS: dict[SecurityLevel, float] = {"low": 0.70, "normal": 0.80, "high": 0.90}

# Every documented code but 200 (success, never looked up here).
ERRORS: Mapping[str, VendorCode] = {
    # 参数错误: the vendor does not say which parameter, and we may not guess from
    # the message, so it is neither the image's fault nor a reason to fail over.
    "400": VendorCode(VendorRejected, "kuaidi100 rejected the request parameters", False),
    # 服务器错误: a vendor-side fault, possibly intermittent; another vendor may answer.
    "500": VendorCode(VendorUnavailable, "kuaidi100 had a server error", False),
    # 重复提交: the vendor refused this submission itself; it is not an outage, and
    # nothing says another attempt (here or elsewhere) would be treated differently.
    "501": VendorCode(VendorRejected, "kuaidi100 rejected the request as a duplicate submission", False),
    # 验证签名失败: our secret_sign is wrong, i.e. secret_key/secret_secret mismatch.
    "503": VendorCode(VendorAuthFailed, "kuaidi100 did not accept our signature", False),
    # 您不是合法的用户 (授权Key出错): secret_key unknown to the vendor.
    "600": VendorCode(VendorAuthFailed, "kuaidi100 does not recognise our secret_key", False),
    # KEY已过期: on the cloud market a key lives as long as its purchased package
    # (有效时长1年), so an expired key means the package must be renewed or topped up.
    "601": VendorCode(VendorQuotaExhausted, "kuaidi100 says our key has expired", False),
}
# Any other code: a refusal we cannot explain, and we cannot tell what it cost.
_UNKNOWN_CODE = VendorCode(VendorRejected, "kuaidi100 refused the request (code {code})", None)

# A decimal score as the vendor writes it ("80.00"). float() alone would also take
# "1_0", "nan" and "1e2", none of which a 0-100 score should ever be.
_SCORE = re.compile(r"^\s*\+?(\d{1,3}(?:\.\d+)?)\s*$")


def _input(ref: ImageRef) -> tuple[str, ImageType]:
    """One image as (value, imageType). Decoded bytes win over a URL or token when
    the service supplied more than one: they are what it has checked and fitted."""
    if ref.image is not None:
        return ref.image.base64, "BASE64"
    if ref.url is not None:
        return ref.url, "URL"
    if ref.face_token is not None:
        return ref.face_token, "FACE_TOKEN"
    raise InvalidRequest("an image is missing", vendor=VENDOR_ID)


def _code(body: Mapping[str, Any]) -> str | None:
    code = body.get("code")
    if isinstance(code, bool) or not isinstance(code, (int, str)):
        return None
    text = str(code).strip()
    return text or None


def parse_score(raw: Any) -> Decimal | None:
    """The vendor's 0-100 score from a string (``"80.00"``) or a JSON number, or None
    when it is anything else (missing, empty, negative, above 100, not finite)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        value = Decimal(raw)
    elif isinstance(raw, float):
        if not math.isfinite(raw):
            return None
        value = Decimal(repr(raw))  # the JSON text, not the binary expansion
    elif isinstance(raw, str):
        m = _SCORE.match(raw)
        if m is None:
            return None
        value = Decimal(m.group(1))
    else:
        return None
    return value if Decimal(0) <= value <= Decimal(100) else None


class Kuaidi100Vendor(HttpCompare):
    id: ClassVar[str] = VENDOR_ID
    name: ClassVar[str] = "快递100 Kuaidi100 face compare"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.COMPARE})
    credentials_model: ClassVar[type[Credentials]] = Kuaidi100Credentials
    options_model: ClassVar[type[BaseModel]] = Kuaidi100Options
    # "BASE64:编码后的图片大小不超过2M": a cap on the encoded text. "2M" may be 2*10^6 or
    # 2*2^20 bytes; 2,000,000 satisfies either (as for Shuxun and face2), so the vendor
    # never refuses what we send: an image between that and 2 MiB costs one re-encode
    # by images.fit. The doc's 总数据大小应小于10M cannot bind: two images at most 2M each.
    limits: ClassVar[ImageLimits] = ImageLimits(formats=frozenset({"JPEG", "PNG", "BMP"}), max_base64_bytes=2_000_000)
    # The face-compare doc shows http://cloud.kuaidi100.com/api, but the same gateway
    # is documented as https://cloud.kuaidi100.com/api on other cloud-market pages
    # (e.g. cloud.kuaidi100.com/platform/productdetail/32164357155.shtml), and
    # facegate never sends credentials or faces in clear text.
    default_endpoint: ClassVar[str] = "https://cloud.kuaidi100.com"
    accepts_urls: ClassVar[bool] = True
    accepts_face_tokens: ClassVar[bool] = True  # imageType FACE_TOKEN: tokens an earlier call returned

    credentials: Kuaidi100Credentials

    # --- request -----------------------------------------------------------------------

    def build_compare(self, image1: ImageRef, image2: ImageRef, ctx: CallContext) -> HttpRequest:
        creds = self.credentials
        options = Kuaidi100Options() if ctx.options is None else ctx.options
        if not isinstance(options, Kuaidi100Options):  # a raw mapping: validate it like the service would
            options = self.parse_options(options)
            assert isinstance(options, Kuaidi100Options)  # options_model is Kuaidi100Options
        source, source_type = _input(image1)
        compare, compare_type = _input(image2)
        # A list, not a dict merge: the field order is the doc's, so a request is the
        # same bytes every time (golden tests) whatever built it.
        fields = [
            ("secret_key", creds.secret_key),
            ("secret_code", creds.secret_code),
            ("secret_sign", secret_sign(creds.secret_key, creds.secret_secret)),
            ("sourceImage", source),
            ("sourceImageType", source_type),
            ("sourceFaceType", options.source_face_type),
            ("sourceLiveControl", options.source_live_control),
            ("compareImage", compare),
            ("compareImageType", compare_type),
            ("compareFaceType", options.compare_face_type),
            ("compareLiveControl", options.compare_live_control),
        ]
        return HttpRequest(
            method="POST",
            url=f"{self.endpoint}{PATH}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=form_body(fields),
        )

    # --- response ----------------------------------------------------------------------

    def parse_compare(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> CompareOutcome:
        body = json_body(response, VENDOR_ID)
        if not isinstance(body, dict):
            raise VendorBadResponse("kuaidi100 answered with something other than a JSON object", vendor=VENDOR_ID)
        code = _code(body)
        message = text(body.get("message"))
        if code is None:
            if response.status >= 500:
                raise VendorUnavailable(
                    f"kuaidi100 answered HTTP {response.status}",
                    vendor=VENDOR_ID,
                    vendor_code=str(response.status),
                    billed=None,
                )
            raise VendorBadResponse("kuaidi100 answered without a result code", vendor=VENDOR_ID, billed=None)
        if code != "200":
            raise_for_code(ERRORS, code, vendor=VENDOR_ID, vendor_message=message, unknown=_UNKNOWN_CODE)
        if response.status != 200:
            raise VendorBadResponse(
                f"kuaidi100 reported success with HTTP {response.status}",
                vendor=VENDOR_ID,
                vendor_code=code,
                billed=None,
            )

        data = body.get("data")
        if not isinstance(data, dict):
            raise VendorBadResponse(
                "kuaidi100 reported success without data", vendor=VENDOR_ID, vendor_code=code, billed=True
            )
        score = parse_score(data.get("score"))
        if score is None:
            raise VendorBadResponse(
                "kuaidi100 reported success without a usable score",
                vendor=VENDOR_ID,
                vendor_code=code,
                billed=True,
            )
        return CompareOutcome(
            similarity=float(score / 100),
            vendor_score=float(score),
            thresholds=THRESHOLDS,
            vendor_request_id=None,  # the doc names no request id
            billed=True,
            # The doc gives a score only, no verdict of its own.
            vendor_match=None,
            inclusive=False,  # see THRESHOLDS: "推荐阈值80分" leaves 80 itself open
            # The vendor's tokens let a caller send the same faces again as
            # {"face_token": ...} without re-uploading them.
            extra={"face_tokens": {"image1": text(data.get("sourceToken")), "image2": text(data.get("compareToken"))}},
        )
