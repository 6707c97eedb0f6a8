"""Shuxun (数勋) face compare: ``POST /v1/faceCompare/check``.

One form-urlencoded POST carrying two images, each either base64 (``image1`` /
``image2``) or a URL the vendor downloads (``imgUrl1`` / ``imgUrl2``); auth is three
headers, ``appKey``, ``timestamp`` (Unix ms) and ``sign`` (see
``facegate.signing.shuxun``). Every answer is the same JSON envelope::

    {"code": "0", "msg": "成功", "isFee": 1, "seqNo": "…",
     "data": {"result": 1, "resultDesc": "…", "confidence": 97.389,
              "threshold": {"threshold1": 62.327, "threshold2": 69.101, "threshold3": 73.975}}}

``code`` says whether the call was served (table ``ERRORS``); when it was, ``result``
says whether a comparison came out of it (table ``RESULTS``). ``isFee`` says whether
the call was billed, whatever the outcome.

Normalisation: ``confidence`` and the thresholds are on a 0..100 scale, so
similarity = confidence / 100. The vendor returns three thresholds with every score
and recommends (建议) threshold2 ("二级") as the same-person line; it gives no verdict
of its own, so ``vendor_match`` stays None and the decision is facegate's, using
low = threshold1, normal = threshold2, high = threshold3. The line is strict at every
level: "建议分数**超过**二级则可判定为是同一人" — a confidence *equal* to a threshold
does not clear it (``inclusive=False``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field, SecretStr

from facegate.errors import (
    ImageUnavailable,
    InvalidImage,
    InvalidRequest,
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
from facegate.signing import shuxun as signing
from facegate.vendors.base import (
    CallContext,
    CompareOutcome,
    Credentials,
    HttpCompare,
    HttpRequest,
    HttpResponse,
    ImageRef,
)
from facegate.vendors.wire import VendorCode, form_body, json_body, percent, raise_for_code, request_id, text

PATH = "/v1/faceCompare/check"
# The doc's samples send this exact value (the table says the bare media type).
CONTENT_TYPE = "application/x-www-form-urlencoded; charset=UTF-8"

# The doc caps each image parameter at "不超过1mb". The cap is written on the
# parameter itself, and image1/image2 are the base64 text, so we read it as a cap on
# the base64 text; "1mb" may be 10^6 or 2^20 bytes, and 1,000,000 satisfies either
# reading (and a cap on the decoded bytes, which the base64 is always larger than).
# Images between 1,000,000 and 1 MiB of base64 just get re-encoded by images.fit.
MAX_BASE64_BYTES = 1_000_000

# Scores and thresholds are percentages in the doc's example (97.389 vs 62.327…).
_SCALE = 100.0


class ShuxunCredentials(Credentials):
    app_key: Annotated[str, Field(min_length=1)]
    app_secret: Annotated[SecretStr, Field(min_length=1)]


# Every documented ``code`` except 0 (成功): the error class and our own message; the
# vendor's ``msg`` goes into ``vendor_message``. Billing is not per code: every answer
# says it in ``isFee``, which the raiser is given, so the table's ``billed`` is None.
ERRORS: Mapping[str, VendorCode] = {
    # 参数错误. We send only two well-formed, already validated and fitted images, so
    # a parameter error is a vendor rule we do not know about (or our bug), not
    # something the caller can fix: rejected, no failover.
    "1": VendorCode(VendorRejected, "shuxun reported a parameter error", None),
    # 无记录. Shared by Shuxun's lookup APIs; compare has no record to look up, so this
    # is an unexplained refusal rather than a fact about the caller's photos.
    "2": VendorCode(VendorRejected, "shuxun reported no record for the request", None),
    # 第三方服务异常: Shuxun's own upstream failed; another attempt or vendor may work.
    "3": VendorCode(VendorUnavailable, "shuxun's upstream service failed", None),
    "4": VendorCode(VendorAuthFailed, "shuxun rejected the request signature", None),  # 签名错误
    "5": VendorCode(VendorQuotaExhausted, "the shuxun account balance is exhausted", None),  # 余额不足
    "6": VendorCode(VendorRateLimited, "shuxun is rate limiting requests", None),  # 调用频率超限
    "7": VendorCode(VendorAuthFailed, "the shuxun account is disabled", None),  # 账号停用
    "8": VendorCode(VendorAuthFailed, "shuxun has disabled the face compare API for this account", None),  # 接口已停用
    "9": VendorCode(
        VendorAuthFailed, "the shuxun account has no permission for face compare", None
    ),  # 联系服务商开通接口权限
    "10": VendorCode(VendorAuthFailed, "shuxun refused our IP address (allow-list)", None),  # ip不在白名单
    "11": VendorCode(VendorUnavailable, "shuxun reported a system error", None),  # 系统异常
    # 实名状态错误: the product is sold only to real-name-verified (实名) accounts, so
    # this is our account's standing with the vendor, like a disabled account.
    "12": VendorCode(VendorAuthFailed, "the shuxun account's real-name status does not allow this call", None),
    # 其他异常,具体返回为准: the detail is only in ``msg``, which we never match on.
    # The vendor answered and refused; we cannot tell the caller why or promise that a
    # retry helps.
    "99": VendorCode(VendorRejected, "shuxun refused the request", None),
}
# Not in the doc: treated like 99, a refusal whose reason we cannot read.
_UNKNOWN_CODE = VendorCode(VendorRejected, "shuxun answered with an undocumented code", None)

SUCCESS_CODE = "0"

SUCCESS_RESULT = "1"  # 比对成功,有数据: a comparison was made
# Every other documented ``data.result`` (under code 0); billing is ``isFee`` again.
RESULTS: Mapping[str, VendorCode] = {
    # 比对成功,无数据: the doc gives no cause. Nothing says the photos lack a face, so
    # blaming them (NoFace) would be a guess; the vendor answered without a score.
    "2": VendorCode(VendorRejected, "shuxun compared the images but returned no score", None),
    # 比对失败,无法正确解析、未按要求传入参数、下载图片超时: the vendor could not read
    # or fetch the images. Base64 images → InvalidImage; URLs → _RESULT_3_WITH_URLS.
    "3": VendorCode(InvalidImage, "shuxun could not read the images", None),
}
# We fully decoded every base64 image before sending; a URL we never saw is the
# likelier culprit of a result 3, and "下载图片超时" (download timed out) is one of the causes.
_RESULT_3_WITH_URLS = VendorCode(ImageUnavailable, "shuxun could not fetch or read the images", None)

THRESHOLD_FIELDS: Mapping[SecurityLevel, str] = {
    "low": "threshold1",  # 一级
    "normal": "threshold2",  # 二级, 建议分数超过二级则可判定为是同一人
    "high": "threshold3",  # 三级
}


@dataclass(frozen=True)
class _State:
    """What the parser needs to know about the request it reads the reply to."""

    sent_urls: bool  # some image went as imgUrlN, so "result 3" may be a failed download


class ShuxunVendor(HttpCompare):
    id: ClassVar[str] = "shuxun"
    name: ClassVar[str] = "数勋 Shuxun face compare"
    operations: ClassVar[frozenset[Operation]] = frozenset({Operation.COMPARE})
    credentials_model: ClassVar[type[Credentials]] = ShuxunCredentials
    # "常用图片格式都支持" names no list; these three are safe everywhere, and images.fit
    # re-encodes anything else (WebP) as JPEG.
    limits: ClassVar[ImageLimits] = ImageLimits(
        formats=frozenset({"JPEG", "PNG", "BMP"}), max_base64_bytes=MAX_BASE64_BYTES
    )
    default_endpoint: ClassVar[str] = "https://api.shuxuntech.com"
    accepts_urls: ClassVar[bool] = True

    # --- request --------------------------------------------------------------------

    def build_compare(self, image1: ImageRef, image2: ImageRef, ctx: CallContext) -> HttpRequest:
        creds = self._credentials()
        fields = [_image_field(1, image1), _image_field(2, image2)]
        timestamp = signing.timestamp_ms(ctx.now)
        headers = {
            "Content-Type": CONTENT_TYPE,
            **signing.auth_headers(creds.app_key, timestamp, creds.app_secret.get_secret_value()),
        }
        # urlencode's default quote_plus escapes base64's "+", "/" and "=" — a bare "+"
        # would reach the vendor as a space and break the image.
        body = form_body(fields)
        state = _State(sent_urls=any(name.startswith("imgUrl") for name, _ in fields))
        return HttpRequest("POST", self.endpoint + PATH, headers, body, state=state)

    def _credentials(self) -> ShuxunCredentials:
        if not isinstance(self.credentials, ShuxunCredentials):
            raise VendorNotConfigured("vendor 'shuxun' has no credentials configured", vendor=self.id)
        return self.credentials

    # --- response -------------------------------------------------------------------

    def parse_compare(self, response: HttpResponse, request: HttpRequest, ctx: CallContext) -> CompareOutcome:
        body = json_body(response, self.id)
        if not isinstance(body, dict) or "code" not in body:
            # JSON, but not the vendor's envelope: a gateway or proxy answered.
            if response.status >= 500:
                raise VendorUnavailable(
                    f"shuxun answered HTTP {response.status}",
                    vendor=self.id,
                    vendor_code=str(response.status),
                    billed=None,
                )
            raise VendorBadResponse(
                f"shuxun answered HTTP {response.status} without its response envelope", vendor=self.id
            )
        code = _as_code(body["code"])
        billed = _billed(body.get("isFee"))
        if code is None:
            raise VendorBadResponse("shuxun's response has an unreadable code", vendor=self.id, billed=billed)
        message = text(body.get("msg"))

        if code != SUCCESS_CODE:
            raise_for_code(ERRORS, code, vendor=self.id, vendor_message=message, unknown=_UNKNOWN_CODE, billed=billed)
        if response.status != 200:
            # "success" with an error status: one of the two is lying; trust neither.
            raise VendorBadResponse(
                f"shuxun answered HTTP {response.status} with a success code", vendor=self.id, billed=billed
            )

        data = body.get("data")
        if not isinstance(data, dict):
            raise VendorBadResponse("shuxun's response has no data", vendor=self.id, billed=billed)
        result = _as_code(data.get("result"))
        description = text(data.get("resultDesc"))
        if result is None or (result != SUCCESS_RESULT and result not in RESULTS):
            raise VendorBadResponse(
                "shuxun answered with an undocumented result",
                vendor=self.id,
                vendor_code=None if result is None else f"result:{result}",
                vendor_message=description,
                billed=billed,
            )
        if result != SUCCESS_RESULT:
            sent_urls = isinstance(request.state, _State) and request.state.sent_urls
            raise_for_code(
                {**RESULTS, "3": _RESULT_3_WITH_URLS} if sent_urls else RESULTS,
                result,
                vendor=self.id,
                vendor_code=f"result:{result}",
                vendor_message=description or message,
                billed=billed,
            )

        confidence = percent(data.get("confidence"))
        if confidence is None:
            raise VendorBadResponse("shuxun's confidence is missing or not in 0..100", vendor=self.id, billed=billed)
        raw = data.get("threshold")
        levels = (
            {level: percent(raw.get(name)) for level, name in THRESHOLD_FIELDS.items()} if isinstance(raw, dict) else {}
        )
        if len(levels) != len(THRESHOLD_FIELDS) or None in levels.values():
            raise VendorBadResponse("shuxun's thresholds are missing or not in 0..100", vendor=self.id, billed=billed)
        thresholds = {level: value / _SCALE for level, value in levels.items() if value is not None}
        if not thresholds["low"] <= thresholds["normal"] <= thresholds["high"]:
            # Out of order, "high" would be laxer than "low": the levels would lie.
            raise VendorBadResponse("shuxun's thresholds are out of order", vendor=self.id, billed=billed)
        return CompareOutcome(
            similarity=confidence / _SCALE,
            vendor_score=confidence,
            thresholds=thresholds,
            vendor_request_id=request_id(body.get("seqNo")),
            billed=billed,
            vendor_match=None,  # the doc recommends threshold2 but gives no verdict
            inclusive=False,  # 建议分数超过二级: "exceeds", not "reaches"
        )


# --- helpers ----------------------------------------------------------------------------


def _image_field(n: int, ref: ImageRef) -> tuple[str, str]:
    """One image as its form field. Only the field in use is sent: the doc marks all
    four optional, and an empty ``imgUrlN`` next to ``imageN`` says nothing useful."""
    if ref.url is not None:
        return f"imgUrl{n}", ref.url
    if ref.image is not None:
        return f"image{n}", ref.image.base64
    # A face token (Kuaidi100's) or nothing at all: Shuxun takes only images and URLs.
    raise InvalidRequest(f"vendor 'shuxun' needs image{n} as base64 or a URL", vendor="shuxun")


def _as_code(value: Any) -> str | None:
    """A code as the doc's string. The doc types ``code`` as string and ``result`` as
    int; accept either spelling of a whole number so a type change is not an outage."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        return str(int(value.strip()))
    return None


def _billed(value: Any) -> bool | None:
    """``isFee``: 1 billed, 0 not; anything else we cannot vouch for either way."""
    if isinstance(value, bool):
        return None
    if value in (1, "1"):
        return True
    if value in (0, "0"):
        return False
    return None
