"""A typed Python client for the facegate HTTP API.

    from facegate.client import Client

    client = Client()  # FACEGATE_URL / FACEGATE_API_KEY, else http://127.0.0.1:3000 and local-dev-key
    answer = client.compare("me.jpg", "https://example.com/me-too.jpg", security_level="high")
    print(answer.decision, answer.similarity)

Images are a path (``str`` or ``PathLike``; read and sent as base64), ``bytes``, an
``http(s)://`` URL (sent as a URL for facegate to fetch), ``s3://bucket/key`` (an S3
input), or an ``ImageInput`` / ``S3Location`` / image dict as the API takes it.

Requests and answers are the API's own pydantic models (``facegate.models``). A refused
request raises ``ApiError`` (status, code, message, retryable, request_id, vendor…);
a server that cannot be reached raises ``Unreachable``.

Retries — one loop, in ``Client.request``:

* an answer the API marks ``retryable`` (429 rate limits, 503/504 vendor trouble, 409
  ``IDEMPOTENCY_IN_PROGRESS``) is retried with exponential backoff and full jitter,
  waiting at least what ``Retry-After`` asks for;
* a connection that failed before the request was sent (refused, DNS, connect
  timeout) is retried the same way;
* an answer lost after the request went out (read timeout, connection reset) is
  retried only when a repeat cannot bill twice: a GET, or a POST carrying an
  ``Idempotency-Key`` (the server then replays the first answer, or says 409 while the
  first still runs);
* nothing else: a 4xx is the caller's mistake and stays one.

Every POST operation gets ONE ``Idempotency-Key`` (a UUID made once per call, sent on
every retry of it), so a retry never bills twice. A deployment without a key store
answers ``501 IDEMPOTENCY_NOT_CONFIGURED`` without running anything; the client then
sends the request once more without the header and remembers, for its lifetime, that
this server has no key store (so lost answers are no longer retried). Pass
``require_idempotency=True`` to get the 501 as an ``ApiError`` instead. The local
runtime (``make run``) has a key store.

This module ships in the layer package: it imports only the standard library and
pydantic at import time; ``requests`` is imported when the first Client is made.

Cohesive: the client is one public module, so ``from facegate.client import …`` gives a
caller everything (the errors, ``Answer``, image inputs and the retry loop); a tenth of
it is this docstring's retry contract.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from facegate.models import (
    CompareRequest,
    CompareResponse,
    DetectRequest,
    DetectResponse,
    FeaturesRequest,
    FeaturesResponse,
    ImageInput,
    S3Location,
    SecurityLevel,
    UsageResponse,
    VendorsResponse,
    VerifyIdentityRequest,
    VerifyIdentityResponse,
)

if TYPE_CHECKING:
    import requests

    from facegate.batch import BatchProgress
    from facegate.store import ResultRecord

DEFAULT_URL = "http://127.0.0.1:3000"
DEFAULT_API_KEY = "local-dev-key"
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_NOT_CONFIGURED = "IDEMPOTENCY_NOT_CONFIGURED"

ImageLike = str | os.PathLike[str] | bytes | ImageInput | S3Location | Mapping[str, Any]
M = TypeVar("M", bound=BaseModel)


# --- errors ------------------------------------------------------------------------------------


class ClientError(Exception):
    """Base of everything this client raises on purpose."""


class ApiError(ClientError):
    """The API refused the request: its contract error body, plus the HTTP status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        request_id: str | None = None,
        vendor: str | None = None,
        vendor_code: str | None = None,
        vendor_message: str | None = None,
        body: str = "",
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
        self.request_id = request_id
        self.vendor = vendor
        self.vendor_code = vendor_code
        self.vendor_message = vendor_message
        self.body = body  # the answer as sent, for --json

    @classmethod
    def from_response(cls, status: int, text: str, headers: Mapping[str, str]) -> ApiError:
        request_id = headers.get("X-Request-Id") or headers.get("x-request-id")
        try:
            data = json.loads(text)
            error = data["error"]
            return cls(
                status,
                str(error["code"]),
                str(error.get("message", "")),
                retryable=bool(error.get("retryable", False)),
                request_id=data.get("request_id") or request_id,
                vendor=error.get("vendor"),
                vendor_code=error.get("vendor_code"),
                vendor_message=error.get("vendor_message"),
                body=text,
            )
        except (ValueError, KeyError, TypeError):
            # Not facegate's shape (a proxy, a load balancer): say what came back, briefly.
            return cls(
                status, f"HTTP_{status}", f"unexpected answer ({len(text)} bytes)", request_id=request_id, body=text
            )


class Unreachable(ClientError):
    """No answer from the server: refused, unresolvable, timed out or cut off."""


class InvalidAnswer(ClientError):
    """A 2xx answer that is not the JSON the contract promises."""


class ImageNotReadable(ClientError):
    """An image given as a path that cannot be read."""


# --- answers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One successful HTTP answer, as sent."""

    status: int
    text: str
    headers: Mapping[str, str] = field(repr=False)

    @property
    def request_id(self) -> str | None:
        return self.headers.get("X-Request-Id")

    @property
    def replayed(self) -> bool:
        """The server replayed the answer it gave the first time this Idempotency-Key came."""
        return self.headers.get("Idempotent-Replay", "").lower() == "true"

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            raise InvalidAnswer(f"the server answered {self.status} with a body that is not JSON") from None

    def parse(self, model: type[M]) -> M:
        from pydantic import ValidationError

        try:
            return model.model_validate_json(self.text)
        except ValidationError as e:
            raise InvalidAnswer(
                f"the server's answer is not a {model.__name__}: {e.error_count()} problem(s)"
            ) from None


# --- images ------------------------------------------------------------------------------------


def image_input(image: ImageLike) -> ImageInput:
    """Any accepted image form → the API's ``ImageInput``. Paths are read here."""
    if isinstance(image, ImageInput):
        return image
    if isinstance(image, S3Location):
        return ImageInput(s3=image)
    if isinstance(image, bytes | bytearray | memoryview):
        return ImageInput(base64=base64.b64encode(bytes(image)).decode("ascii"))
    if isinstance(image, Mapping):
        return ImageInput.model_validate(image)
    if isinstance(image, str):
        lowered = image.lower()
        if lowered.startswith(("https://", "http://")):
            return ImageInput(url=image)
        if lowered.startswith("s3://"):
            bucket, _, key = image[5:].partition("/")
            if not bucket or not key:
                raise ImageNotReadable(f"{image}: an S3 image is s3://bucket/key")
            return ImageInput(s3=S3Location(bucket=bucket, key=key))
    path = Path(image)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageNotReadable(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageNotReadable(f"{path}: is a directory, not an image") from None
    except OSError as e:
        raise ImageNotReadable(f"{path}: cannot read it ({e.strerror or type(e).__name__})") from None
    return ImageInput(base64=base64.b64encode(data).decode("ascii"))


# --- the client --------------------------------------------------------------------------------


class Client:
    """One facegate API endpoint and key, over one ``requests.Session``."""

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        connect_timeout: float = 5.0,
        # Above the API's own 29 s limit: the server answers first (504 VENDOR_TIMEOUT).
        read_timeout: float = 35.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        retry_after_max: float = 60.0,
        require_idempotency: bool = False,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        import requests

        self.url = (url or os.environ.get("FACEGATE_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key or os.environ.get("FACEGATE_API_KEY") or DEFAULT_API_KEY
        self.timeout = (connect_timeout, read_timeout)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.require_idempotency = require_idempotency
        self.idempotency_supported: bool | None = None  # None: not known yet
        self._sleep = sleep
        self.session = session or requests.Session()
        self.session.headers.update({"x-api-key": self.api_key, "Accept": "application/json"})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # --- the one request loop ---

    def request(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool = False,
    ) -> Answer:
        """Send one logical request, retrying where that is safe (see the module doc).
        ``idempotent`` adds one Idempotency-Key for this call and all its retries."""
        import requests

        data = None
        if body is not None:
            payload = body.model_dump(mode="json", exclude_none=True) if isinstance(body, BaseModel) else dict(body)
            data = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        key = str(uuid.uuid4()) if idempotent and self.idempotency_supported is not False else None
        retries = 0
        while True:
            if key is not None:
                headers[IDEMPOTENCY_HEADER] = key
            else:
                headers.pop(IDEMPOTENCY_HEADER, None)
            safe_to_repeat = method == "GET" or key is not None
            try:
                r = self.session.request(
                    method, self.url + path, data=data, params=params, headers=headers, timeout=self.timeout
                )
            except requests.exceptions.ConnectionError as e:
                # ConnectTimeout is a ConnectionError too; nothing was sent in either case.
                before_sending = _never_sent(e)
                if retries < self.max_retries and (before_sending or safe_to_repeat):
                    retries += 1
                    self._sleep(self._backoff(retries, None))
                    continue
                what = "cannot connect to" if before_sending else "lost the connection to"
                raise Unreachable(f"{what} {self.url} ({_reason(e)})") from None
            except requests.exceptions.Timeout:
                if retries < self.max_retries and safe_to_repeat:
                    retries += 1
                    self._sleep(self._backoff(retries, None))
                    continue
                raise Unreachable(f"no answer from {self.url} within {self.timeout[1]:g} s") from None
            except requests.exceptions.RequestException as e:
                raise Unreachable(f"cannot talk to {self.url} ({type(e).__name__})") from None

            if r.ok:
                if key is not None:
                    self.idempotency_supported = True
                return Answer(r.status_code, _text(r), r.headers)
            error = ApiError.from_response(r.status_code, _text(r), r.headers)
            if error.code == IDEMPOTENCY_NOT_CONFIGURED and key is not None and not self.require_idempotency:
                # The server refused the header before running anything: the same
                # request without it is the first one to run.
                self.idempotency_supported = False
                key = None
                continue
            if error.retryable and retries < self.max_retries:
                retries += 1
                self._sleep(self._backoff(retries, r.headers.get("Retry-After")))
                continue
            raise error

    def _backoff(self, retry: int, retry_after: str | None) -> float:
        """Full jitter over an exponential window, never less than Retry-After."""
        window = min(self.backoff_max, self.backoff_base * 2 ** (retry - 1))
        delay = random.uniform(0, window)  # noqa: S311 - jitter, not a secret  # nosec B311
        asked = _retry_after_seconds(retry_after)
        if asked is not None:
            delay = max(delay, min(asked, self.retry_after_max))
        return delay

    # --- requests, as the API's models ---

    def compare_request(
        self,
        image1: ImageLike,
        image2: ImageLike,
        *,
        vendor: str | None = None,
        fallback: Sequence[str] = (),
        security_level: SecurityLevel = "normal",
        options: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> CompareRequest:
        return CompareRequest(
            image1=image_input(image1),
            image2=image_input(image2),
            vendor=vendor,
            fallback=list(fallback),
            security_level=security_level,
            options=dict(options or {}),
            **extra,
        )

    def detect_request(self, image: ImageLike, *, vendor: str | None = None, **extra: Any) -> DetectRequest:
        return DetectRequest(image=image_input(image), vendor=vendor, **extra)

    def features_request(self, image: ImageLike, *, vendor: str | None = None, **extra: Any) -> FeaturesRequest:
        return FeaturesRequest(image=image_input(image), vendor=vendor, **extra)

    def verify_identity_request(
        self,
        image: ImageLike,
        *,
        name: str,
        id_number: str,
        vendor: str | None = None,
        security_level: SecurityLevel = "normal",
        **extra: Any,
    ) -> VerifyIdentityRequest:
        return VerifyIdentityRequest(
            image=image_input(image),
            name=name,
            id_number=id_number,
            vendor=vendor,
            security_level=security_level,
            **extra,
        )

    # --- operations ---

    def compare(self, image1: ImageLike, image2: ImageLike, **kwargs: Any) -> CompareResponse:
        """Are the faces in two images the same person? ``kwargs``: vendor, fallback,
        security_level, options, consensus, …"""
        request = self.compare_request(image1, image2, **kwargs)
        return self.request("POST", "/v1/compare", body=request, idempotent=True).parse(CompareResponse)

    def detect(self, image: ImageLike, **kwargs: Any) -> DetectResponse:
        request = self.detect_request(image, **kwargs)
        return self.request("POST", "/v1/detect", body=request, idempotent=True).parse(DetectResponse)

    def features(self, image: ImageLike, **kwargs: Any) -> FeaturesResponse:
        request = self.features_request(image, **kwargs)
        return self.request("POST", "/v1/features", body=request, idempotent=True).parse(FeaturesResponse)

    def verify_identity(self, image: ImageLike, *, name: str, id_number: str, **kwargs: Any) -> VerifyIdentityResponse:
        request = self.verify_identity_request(image, name=name, id_number=id_number, **kwargs)
        answer = self.request("POST", "/v1/verify-identity", body=request, idempotent=True)
        return answer.parse(VerifyIdentityResponse)

    def result(self, request_id: str) -> ResultRecord:
        from facegate.store import ResultRecord

        return self.request("GET", f"/v1/results/{path_segment(request_id)}").parse(ResultRecord)

    def delete_result(self, request_id: str) -> None:
        self.request("DELETE", f"/v1/results/{path_segment(request_id)}")

    def vendors(self) -> VendorsResponse:
        return self.request("GET", "/v1/vendors").parse(VendorsResponse)

    def usage(self, from_: str | None = None, to: str | None = None) -> UsageResponse:
        """Calls per vendor and operation between two dates (YYYY-MM-DD, inclusive)."""
        return self.request("GET", "/v1/usage", params=usage_params(from_, to)).parse(UsageResponse)

    def batch(self, batch_id: str) -> BatchProgress:
        """A batch's progress, by its id (or its manifest name, for the newest batch)."""
        from facegate.batch import BatchProgress

        return self.request("GET", f"/v1/batches/{path_segment(batch_id)}").parse(BatchProgress)


# --- helpers -----------------------------------------------------------------------------------


def _text(response: requests.Response) -> str:
    # JSON is UTF-8 (RFC 8259); requests would guess a charset the API never names.
    return response.content.decode("utf-8", errors="replace")


def usage_params(from_: str | None, to: str | None) -> dict[str, str]:
    return {k: v for k, v in (("from", from_), ("to", to)) if v}


def path_segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After``: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _causes(error: BaseException) -> list[BaseException]:
    """The error and what it wraps: requests → urllib3's MaxRetryError → its reason → OSError."""
    chain: list[BaseException] = []
    cause: object = error
    while isinstance(cause, BaseException) and cause not in chain and len(chain) < 10:
        chain.append(cause)
        reason = getattr(cause, "reason", None)  # MaxRetryError
        cause = reason if isinstance(reason, BaseException) else cause.__cause__ or cause.__context__
        if cause is None and chain[-1].args and isinstance(chain[-1].args[0], BaseException):
            cause = chain[-1].args[0]
    return chain


def _never_sent(error: BaseException) -> bool:
    """Did the connection fail before any byte of the request went out?"""
    import urllib3.exceptions

    before = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
    return any(isinstance(c, before) for c in _causes(error))


def _reason(error: BaseException) -> str:
    """A few words on why, from the exception types (never their text, which can be long)."""
    import socket

    import urllib3.exceptions

    chain = _causes(error)
    named = (
        (ConnectionRefusedError, "connection refused"),
        (socket.gaierror | urllib3.exceptions.NameResolutionError, "host name not resolved"),
        (ConnectionResetError, "connection reset"),
        # NewConnectionError subclasses ConnectTimeoutError: look for the OS errors first.
        (urllib3.exceptions.ConnectTimeoutError | TimeoutError, "connect timed out"),
    )
    for kind, words in named:
        if any(isinstance(c, kind) for c in chain):
            return words
    return type(error).__name__
