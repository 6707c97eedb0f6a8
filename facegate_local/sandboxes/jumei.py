"""聚美智数 人脸身份证比对, behind the Tencent Cloud marketplace gateway, on loopback.

Two layers, as in production:

* the gateway: key-pair authentication (``Authorization: hmac id=…, algorithm=…,
  headers=…, signature=…``), the signed headers recomputed from the request, an
  X-Date more than 900 s off refused; its refusals are HTTP 401 with a JSON
  ``{"message": …}`` body worded like Tencent's API gateway error table;
* the product: ``POST /release/idcardface/validate`` with a form body, answered
  with the doc's ``code`` / ``taskNo`` / ``data.incorrect`` bodies.

Written from the vendor doc and Tencent's gateway docs alone; nothing here comes
from facegate. Messages recorded in ``rejected`` never contain names or ID numbers.

Behaviour controls: ``people`` ({id_number: name}, the fictional public-security
record), ``score`` (the similarity answered for a match), ``next_incorrect`` (force
one ``incorrect`` code 101–113 on the next well-formed request), ``max_image_bytes``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from facegate_local.sandboxes.base import Sandbox, SandboxRequest, SandboxResponse

PATH = "/release/idcardface/validate"
# The sandbox's own fixed key pair: it guards nothing but this loopback server.
SECRET_ID = "AKIDsandboxJumei0000000000000000"  # noqa: S105 - the sandbox's fake credential  # nosec B105
SECRET_KEY = "sandbox-jumei-secret-key"  # noqa: S105 - the sandbox's fake credential  # nosec B105
SOURCE = "market"
# A fictional person: region 110105, born 1990-03-07, sequence 123, check digit 9.
DEFAULT_ID_NUMBER = "110105199003071239"
DEFAULT_NAME = "张三"
MAX_SKEW_S = 900  # Tencent's gateway: "the x-date header is out of date", 900 s by default

INCORRECT_MSG = {
    100: "系统判断为同一人",
    101: "身份证号码姓名不一致",
    102: "库中无此号",
    103: "身份核验成功,数据非法",
    104: "数据非法",
    106: "人脸识别系统异常",
    107: "照片质量不合格",
    108: "上传图片文件过大",
    109: "身份核验成功,库中无照片",
    110: "身份核验成功,特征提取失败",
    111: "身份核验成功,检测到多于一张人脸",
    112: "身份核验成功,图片不合法",
    113: "人像比对服务异常",
}

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HTTP_DATE = re.compile(r"([A-Z][a-z]{2}), (\d{2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT")
_AUTH_PARAM = re.compile(r'\s*([a-zA-Z]+)\s*=\s*"([^"]*)"\s*(?:,|$)')
_HASHES = {
    "hmac-sha1": hashlib.sha1,
    "hmac-sha256": hashlib.sha256,
    "hmac-sha384": hashlib.sha384,
    "hmac-sha512": hashlib.sha512,
}
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM")


def id_number_ok(number: str) -> bool:
    """GB 11643-1999 format and check character, written independently of facegate."""
    if not re.fullmatch(r"\d{17}[\dX]", number):
        return False
    try:
        datetime(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    weighted = 0
    for position, digit in enumerate(number[:17]):
        weighted += int(digit) * (2 ** (17 - position) % 11)
    return "10X98765432"[weighted % 11] == number[17]


def parse_http_date(value: str) -> float | None:
    """Seconds since the epoch for an RFC 1123 GMT date, or None (strict: English
    names, two-digit day, weekday consistent with the date)."""
    m = _HTTP_DATE.fullmatch(value.strip())
    if not m or m.group(1) not in _DAYS or m.group(3) not in _MONTHS:
        return None
    try:
        dt = datetime(
            int(m.group(4)),
            _MONTHS.index(m.group(3)) + 1,
            int(m.group(2)),
            int(m.group(5)),
            int(m.group(6)),
            int(m.group(7)),
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if _DAYS[dt.weekday()] != m.group(1):
        return None
    return dt.timestamp()


class JumeiSandbox(Sandbox):
    vendor = "jumei"

    def __init__(
        self,
        *,
        people: dict[str, str] | None = None,
        score: float = 0.82,
        max_image_bytes: int = 2 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        **kw,
    ):
        super().__init__(**kw)
        self.people = dict(people) if people is not None else {DEFAULT_ID_NUMBER: DEFAULT_NAME}
        self.score = score
        self.max_image_bytes = max_image_bytes
        self.clock = clock
        self.next_incorrect: int | None = None
        self.keys = {SECRET_ID: SECRET_KEY}
        self._task_numbers = itertools.count(568753443590770688)

    def reset(self) -> None:
        """Also forget a pending forced code: a module-scoped sandbox is reset
        between tests, and a leftover ``next_incorrect`` would leak into the next."""
        super().reset()
        self.next_incorrect = None

    @staticmethod
    def default_credentials() -> dict[str, str]:
        return {"secret_id": SECRET_ID, "secret_key": SECRET_KEY, "source": SOURCE}

    # --- the gateway -----------------------------------------------------------------

    def _gateway_refusal(self, message: str, status: int = 401) -> SandboxResponse:
        self.reject(message)
        return SandboxResponse.json({"message": message}, status=status)

    def _authenticate(self, req: SandboxRequest) -> SandboxResponse | None:
        auth = req.headers.get("Authorization")
        if not auth:
            return self._gateway_refusal(
                "HMAC signature cannot be verified, a validate authorization header is required"
            )
        scheme, _, rest = auth.strip().partition(" ")
        if scheme.lower() != "hmac":
            return self._gateway_refusal("HMAC authorization format error")
        params: dict[str, str] = {}
        pos = 0
        rest = rest.strip()
        while pos < len(rest):
            m = _AUTH_PARAM.match(rest, pos)
            if not m or m.end() == pos:
                return self._gateway_refusal("HMAC authorization format error")
            params[m.group(1).lower()] = m.group(2)
            pos = m.end()
        if not params.get("id") or not params.get("signature"):
            return self._gateway_refusal("HMAC id or signature missing")
        algorithm = params.get("algorithm", "")
        if algorithm not in _HASHES:
            return self._gateway_refusal(f"HMAC algorithm {algorithm or '(none)'} not supported")
        signed = params.get("headers", "").split()
        if "x-date" not in signed:
            return self._gateway_refusal("HMAC signature cannot be verified, a valid date or x-date header is required")
        for name in signed:
            if not req.headers.get(name):
                return self._gateway_refusal(f"HMAC signature cannot be verified, a valid {name} header is required")
            get_all = getattr(req.headers, "get_all", None)
            if get_all is not None and len(get_all(name) or []) > 1:
                return self._gateway_refusal("HMAC do not support multiple HTTP header")
        # The marketplace signs X-Source too; a request without it is not a market call.
        if "x-source" not in signed:
            return self._gateway_refusal("HMAC authorization headers is invalidate")
        sent_at = parse_http_date(req.headers["x-date"])
        if sent_at is None:
            return self._gateway_refusal(
                "HMAC signature cannot be verified, a valid x-date header is required for HMAC Authentication"
            )
        if abs(self.clock() - sent_at) > MAX_SKEW_S:
            return self._gateway_refusal(
                "HMAC signature cannot be verified, the x-date header is out of date for HMAC Authentication"
            )
        secret = self.keys.get(params["id"])
        if secret is None:
            return self._gateway_refusal("HMAC signature cannot be verified")
        signing_string = "\n".join(f"{name.lower()}: {req.headers[name]}" for name in signed)
        expected = base64.b64encode(
            hmac.new(secret.encode("utf-8"), signing_string.encode("utf-8"), _HASHES[algorithm]).digest()
        ).decode("ascii")
        if not hmac.compare_digest(expected, params["signature"]):
            return self._gateway_refusal("HMAC signature does not match")
        return None

    def fault_response(self, fault: str, req: SandboxRequest) -> SandboxResponse:
        if fault == "auth":
            return self._gateway_refusal("HMAC signature does not match")
        if fault == "quota":
            # Tencent documents no distinct answer for a used-up marketplace package;
            # the gateway's usage plan refuses it like a throttle. The wording is ours.
            return SandboxResponse.json({"message": "API quota exhausted"}, status=429)
        return SandboxResponse.json({"message": "API rate limit exceeded"}, status=429)

    # --- the product -----------------------------------------------------------------

    def _answer(self, code: int, msg: str) -> SandboxResponse:
        self.reject(msg)
        return SandboxResponse.json({"msg": msg, "code": code})

    def _result(self, incorrect: int, score: float = 0.0) -> SandboxResponse:
        body = {
            "code": 200,
            "taskNo": str(next(self._task_numbers)),
            "data": {"score": score, "msg": INCORRECT_MSG[incorrect], "incorrect": incorrect},
        }
        return SandboxResponse.json(body, billed=True)

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        # The gateway routes first (an unknown path or method never reaches the
        # key-pair check), then authenticates, then hands the call to the product.
        if req.path != PATH:
            return self._gateway_refusal("There is no api match", status=404)
        if req.method != "POST":
            return self._gateway_refusal("Could not support method", status=404)
        refused = self._authenticate(req)
        if refused is not None:
            return refused
        content_type = req.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return self._answer(400, "参数错误")
        try:
            form = req.form()
        except UnicodeDecodeError:
            return self._answer(400, "参数错误")
        name = form.get("name", "")
        number = form.get("idcard_number", "")
        image_b64 = form.get("imgBase64", "")
        image_url = form.get("imgUrl", "")
        # The doc's samples send empty placeholders; an empty field counts as absent.
        if not name or not number or bool(image_b64) == bool(image_url):
            return self._answer(400, "参数错误")
        if not id_number_ok(number):
            return self._answer(400, "身份证号格式错误")

        image: bytes | None = None
        if image_b64:
            try:
                image = base64.b64decode(image_b64, validate=True)
            except (binascii.Error, ValueError):
                image = b""
            if len(image) > self.max_image_bytes:
                return self._result(108)

        if self.next_incorrect is not None:
            forced, self.next_incorrect = self.next_incorrect, None
            return self._result(forced)

        if number not in self.people:
            return self._result(102)
        if self.people[number] != name:
            return self._result(101)
        if image is not None and not image.startswith(_IMAGE_MAGIC):
            return self._result(112)
        if image is None and not image_url.lower().startswith(("http://", "https://")):
            return self._result(112)
        return self._result(100, self.score)
