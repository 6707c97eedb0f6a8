"""A request's images: where their bytes come from, checked once, fitted to each vendor.

The service hands over the request's ``ImageInput``s with the vendors it may call, and
then asks only for one vendor's ``ImageRef``s (``RequestImages.refs_for``). Everything
about getting an image is here: base64 text; S3 objects (which buckets and prefixes a
stage reads, botocore's errors as the contract's); URLs, fetched through the guarded
fetcher (``facegate.fetch``) only once a vendor needs their bytes; one check by content
(``facegate.images``); the SHA-256 fingerprints the results log keeps; and
fitting to a vendor's limits, splitting a per-call byte cap between the images.

Every image is checked before any vendor is called; boto3 is imported only when an S3
image is read, the fetcher only when a URL is.
"""

from __future__ import annotations

import hashlib
from functools import cache
from typing import TYPE_CHECKING

from facegate import images as imagelib
from facegate.config import Settings
from facegate.errors import ImageTooLarge, ImageUnavailable, InvalidRequest
from facegate.models import ImageInput, S3Location
from facegate.vendors.base import ImageRef, Vendor

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class RequestImages:
    """The request's images, each read and decoded at most once, then fitted to each
    vendor's limits as that vendor is tried."""

    def __init__(
        self,
        inputs: list[ImageInput],
        vendors: list[type[Vendor]],
        cfg: Settings,
        deadline: float | None = None,  # time.monotonic() value a URL fetch must finish by
    ):
        for cls in vendors:
            refuse_unacceptable(inputs, cls)
        self.inputs = inputs
        self.cfg = cfg
        self.deadline = deadline
        for inp in inputs:  # every s3 image's place is checked before any is read
            if inp.s3 is not None:
                s3_bucket(inp.s3, cfg)
        self._decoded: list[imagelib.Image | None] = [None] * len(inputs)
        for i, inp in enumerate(inputs):
            if inp.kind == "base64":
                self._decoded[i] = imagelib.load_bytes(imagelib.decode_base64(inp.base64 or ""))
            elif inp.kind == "s3":
                assert inp.s3 is not None
                self._decoded[i] = imagelib.load_bytes(read_s3(inp.s3, cfg))
            elif inp.kind == "url":
                self._check_url(inp.url or "")
        self.fingerprints: list[str] = [self._fingerprint(i) for i in range(len(inputs))]

    def refs_for(self, vendor: Vendor) -> list[ImageRef]:
        """The images as ``vendor`` takes them: bytes fitted to its limits (a per-call
        ``total_bytes`` split evenly between the images sent as bytes), or a URL or
        face token passed through where it takes those."""
        sends_bytes = [self._sends_bytes(inp, vendor) for inp in self.inputs]
        total = vendor.limits.total_bytes
        budget = total // sum(sends_bytes) if total and any(sends_bytes) else None
        return [
            ImageRef(image=imagelib.fit(self._image(i), vendor.limits, budget)) if as_bytes else self._passthrough(inp)
            for i, (inp, as_bytes) in enumerate(zip(self.inputs, sends_bytes, strict=True))
        ]

    def size(self, i: int) -> tuple[int, int] | None:
        """Image ``i``'s (width, height) as sent, if its bytes were read (a URL a vendor
        took as a URL never is)."""
        image = self._decoded[i]
        return None if image is None else (image.width, image.height)

    def held(self, i: int) -> imagelib.Image | None:
        """Image ``i`` if its bytes are already read (base64, S3, a URL already fetched); None
        for a URL not fetched and a face token. Never fetches."""
        return self._decoded[i]

    def _fingerprint(self, i: int) -> str:
        image = self._decoded[i]
        if image is not None:
            return image.sha256
        inp = self.inputs[i]
        return hashlib.sha256((inp.url or inp.face_token or "").encode()).hexdigest()

    @staticmethod
    def _sends_bytes(inp: ImageInput, vendor: Vendor) -> bool:
        return inp.kind in ("base64", "s3") or (inp.kind == "url" and not vendor.accepts_urls)

    @staticmethod
    def _passthrough(inp: ImageInput) -> ImageRef:
        return ImageRef(face_token=inp.face_token) if inp.kind == "face_token" else ImageRef(url=inp.url)

    def _image(self, i: int) -> imagelib.Image:
        image = self._decoded[i]
        if image is None:  # a URL, fetched only once a vendor needs its bytes
            image = self._decoded[i] = imagelib.load_bytes(self._fetch_url(self.inputs[i].url or ""))
        return image

    def _check_url(self, url: str) -> None:
        if url.lower().startswith("http://") and not self.cfg.allow_http_urls:
            raise InvalidRequest("image URLs must use https://")

    def _fetch_url(self, url: str) -> bytes:
        from facegate.fetch import default_fetcher

        cfg = self.cfg
        return default_fetcher().fetch(
            url, allow_http=cfg.allow_http_urls, allowlist=cfg.url_allowlist, deadline=self.deadline
        )


def refuse_unacceptable(inputs: list[ImageInput], cls: type[Vendor]) -> None:
    """Refuse inputs a planned vendor could never take, before any call."""
    for inp in inputs:
        if inp.kind == "face_token" and not cls.accepts_face_tokens:
            raise InvalidRequest(f"face_token images are only accepted by kuaidi100, not '{cls.id}'")


def s3_bucket(location: S3Location, cfg: Settings) -> str:
    """The bucket an ``{"s3": …}`` image is read from: the stack's own (under
    ``inputs_prefix`` when one is set) or one ``input_buckets`` lists, which are
    exactly what the function's role may read (template.yaml). Anything else is
    the caller's error, answered before any AWS call."""
    bucket = location.bucket or cfg.bucket
    if not bucket:
        raise InvalidRequest("s3 images need a bucket (no default bucket is configured)")
    if bucket == cfg.bucket:
        if cfg.inputs_prefix and not location.key.startswith(cfg.inputs_prefix):
            raise InvalidRequest(f"s3 image keys in the stage's bucket must start with {cfg.inputs_prefix!r}")
    elif bucket not in cfg.input_buckets:
        raise InvalidRequest("s3 images may only name the stage's bucket or one its ExtraInputBuckets lists")
    return bucket


def read_s3(location: S3Location, cfg: Settings) -> bytes:
    """The object's bytes; S3's refusals (missing, forbidden) are the caller's 422."""
    from botocore.exceptions import ClientError, ParamValidationError

    bucket = s3_bucket(location, cfg)
    try:
        obj = _s3().get_object(Bucket=bucket, Key=location.key)
    except ParamValidationError:  # botocore's own checks (a bucket name like "a/../b"), before any call
        raise InvalidRequest("the s3 bucket or key is not valid") from None
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        raise ImageUnavailable(f"the S3 image could not be read ({code})") from None
    if obj.get("ContentLength", 0) > imagelib.MAX_IMAGE_BYTES:
        raise ImageTooLarge("the S3 image is larger than the limit")
    return obj["Body"].read()


@cache
def _s3() -> S3Client:
    import boto3

    return boto3.client("s3")
