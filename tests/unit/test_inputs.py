"""facegate.inputs: a request's images read, decoded and checked once, fitted per vendor.

The API-level contract (status codes, no S3 or vendor call on a refusal) is tested in
tests/integration (test_operations_local, test_compare_bad_input, test_image_urls);
these pin the module's own rules without AWS or HTTP.
"""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from facegate import inputs
from facegate.config import Settings
from facegate.errors import ImageTooLarge, ImageUnavailable, InvalidRequest
from facegate.images import MAX_IMAGE_BYTES, ImageLimits
from facegate.inputs import RequestImages, s3_bucket
from facegate.models import ImageInput, S3Location
from facegate.vendors.kuaidi100 import Kuaidi100Vendor
from facegate.vendors.local import LocalVendor
from facegate.vendors.shuxun import ShuxunVendor
from facegate.vendors.zoloz import ZolozVendor

STAGE = Settings(bucket="stage-bucket", inputs_prefix="inputs/", input_buckets=["extra-images"])


def b64_input(data: bytes) -> ImageInput:
    return ImageInput(base64=base64.b64encode(data).decode())


class FakeS3:
    """What the module asks of boto3's client: get_object, answering or raising."""

    def __init__(self, answer=None, error: Exception | None = None):
        self.answer, self.error, self.calls = answer, error, []

    def get_object(self, **kw):
        self.calls.append(kw)
        if self.error is not None:
            raise self.error
        return self.answer


@pytest.fixture
def s3(monkeypatch):
    def use(client: FakeS3) -> FakeS3:
        monkeypatch.setattr(inputs, "_s3", lambda: client)
        return client

    return use


class FakeFetcher:
    def __init__(self, data: bytes):
        self.data, self.calls = data, []

    def fetch(self, url, *, allow_http, allowlist, deadline):
        self.calls.append((url, allow_http, tuple(allowlist), deadline))
        return self.data


# --- where S3 images may come from ----------------------------------------------------


@pytest.mark.parametrize(
    ("location", "bucket"),
    [
        (S3Location(key="inputs/a.jpg"), "stage-bucket"),
        (S3Location(bucket="stage-bucket", key="inputs/a.jpg"), "stage-bucket"),
        (S3Location(bucket="extra-images", key="anywhere/a.jpg"), "extra-images"),  # no prefix in listed buckets
    ],
)
def test_s3_images_are_read_from_the_stages_bucket_under_its_prefix_or_a_listed_bucket(location, bucket):
    assert s3_bucket(location, STAGE) == bucket


@pytest.mark.parametrize(
    ("cfg", "location", "why"),
    [
        (STAGE, S3Location(key="batches/x.jsonl"), "must start with 'inputs/'"),
        (STAGE, S3Location(bucket="stage-bucket", key="results/x"), "must start with 'inputs/'"),
        (STAGE, S3Location(bucket="someone-elses", key="inputs/a.jpg"), "ExtraInputBuckets"),
        (Settings(), S3Location(key="inputs/a.jpg"), "no default bucket"),
    ],
)
def test_s3_images_elsewhere_are_the_callers_error_before_any_s3_call(s3, cfg, location, why):
    client = s3(FakeS3())
    with pytest.raises(InvalidRequest, match=why):
        RequestImages([ImageInput(s3=location)], [LocalVendor], cfg)
    assert client.calls == []


def test_every_s3_place_is_checked_before_any_is_read(s3):
    client = s3(FakeS3(error=AssertionError("read before every place was checked")))
    good, bad = S3Location(key="inputs/a.jpg"), S3Location(bucket="someone-elses", key="a.jpg")
    with pytest.raises(InvalidRequest):
        RequestImages([ImageInput(s3=good), ImageInput(s3=bad)], [LocalVendor], STAGE)
    assert client.calls == []


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        (
            ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject"),
            ImageUnavailable,
            r"could not be read \(NoSuchKey\)",
        ),
        (ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject"), ImageUnavailable, "AccessDenied"),
        (ParamValidationError(report="Invalid bucket name"), InvalidRequest, "bucket or key is not valid"),
    ],
)
def test_s3_refusals_become_the_contracts_errors(s3, error, expected, message):
    s3(FakeS3(error=error))
    with pytest.raises(expected, match=message):
        RequestImages([ImageInput(s3=S3Location(key="inputs/a.jpg"))], [LocalVendor], STAGE)


def test_an_s3_object_over_the_limit_is_refused_unread(s3):
    body = SimpleNamespace(read=lambda: pytest.fail("an oversized object was read"))
    s3(FakeS3({"ContentLength": MAX_IMAGE_BYTES + 1, "Body": body}))
    with pytest.raises(ImageTooLarge):
        RequestImages([ImageInput(s3=S3Location(key="inputs/a.jpg"))], [LocalVendor], STAGE)


def test_an_s3_image_is_read_from_its_bucket_and_decoded(s3, face_bytes):
    data = face_bytes("obama.jpg")
    client = s3(FakeS3({"ContentLength": len(data), "Body": SimpleNamespace(read=lambda: data)}))
    images = RequestImages([ImageInput(s3=S3Location(bucket="extra-images", key="in/a.jpg"))], [LocalVendor], STAGE)
    assert client.calls == [{"Bucket": "extra-images", "Key": "in/a.jpg"}]
    assert images.fingerprints == [hashlib.sha256(data).hexdigest()]
    assert images.size(0) is not None


def test_base64_images_never_touch_s3(s3, face_bytes):
    client = s3(FakeS3(error=AssertionError("S3 called")))
    RequestImages([b64_input(face_bytes("obama.jpg"))], [LocalVendor], STAGE)
    assert client.calls == []


# --- which vendor takes what ----------------------------------------------------------


def test_face_tokens_are_refused_for_a_vendor_that_cannot_take_them_before_any_read():
    with pytest.raises(InvalidRequest, match="only accepted by kuaidi100, not 'shuxun'"):
        RequestImages([ImageInput(face_token="tok")], [Kuaidi100Vendor, ShuxunVendor], STAGE)


def test_face_tokens_pass_through_to_kuaidi100_fingerprinted_by_their_text():
    images = RequestImages([ImageInput(face_token="tok")], [Kuaidi100Vendor], STAGE)
    (ref,) = images.refs_for(Kuaidi100Vendor)  # type: ignore[arg-type]  # limits and accepts_urls are class-level
    assert (ref.face_token, ref.image, ref.url) == ("tok", None, None)
    assert images.fingerprints == [hashlib.sha256(b"tok").hexdigest()]
    assert images.size(0) is None


def test_plain_http_urls_are_refused_unless_the_stage_allows_them():
    url = ImageInput(url="http://photos.example/a.jpg")
    with pytest.raises(InvalidRequest, match="https://"):
        RequestImages([url], [LocalVendor], STAGE)
    RequestImages([url], [LocalVendor], Settings(allow_http_urls=True))


def test_a_url_is_passed_through_or_fetched_once_when_a_vendor_needs_its_bytes(monkeypatch, face_bytes):
    fetcher = FakeFetcher(face_bytes("obama.jpg"))
    monkeypatch.setattr("facegate.fetch.default_fetcher", lambda: fetcher)
    cfg = Settings(url_allowlist=["127.0.0.1"])
    url = "https://photos.example/a.jpg"
    images = RequestImages([ImageInput(url=url)], [Kuaidi100Vendor, LocalVendor], cfg, deadline=123.0)
    assert fetcher.calls == []  # nothing fetched to check a request
    assert images.fingerprints == [hashlib.sha256(url.encode()).hexdigest()]

    assert images.refs_for(Kuaidi100Vendor)[0].url == url  # type: ignore[arg-type]  # takes URLs itself
    assert fetcher.calls == []
    first = images.refs_for(LocalVendor)[0]  # type: ignore[arg-type]
    again = images.refs_for(LocalVendor)[0]  # type: ignore[arg-type]
    assert first.image is not None and again.image is not None
    assert fetcher.calls == [(url, False, ("127.0.0.1",), 123.0)]  # once, with the stage's guards and the deadline
    assert images.size(0) == (first.image.width, first.image.height)


# --- fitting ------------------------------------------------------------------------


def vendor(limits: ImageLimits, accepts_urls: bool = False):
    return SimpleNamespace(limits=limits, accepts_urls=accepts_urls)


def test_a_per_call_byte_cap_is_split_between_the_images_sent_as_bytes(face_bytes):
    data = face_bytes("obama.jpg")
    cap = len(data)  # both as they are would need twice this
    images = RequestImages([b64_input(data), b64_input(data)], [LocalVendor], STAGE)
    refs = images.refs_for(vendor(ImageLimits(total_bytes=cap)))  # type: ignore[arg-type]
    sizes = [len(r.image.data) for r in refs if r.image is not None]
    assert len(sizes) == 2 and all(s <= cap // 2 for s in sizes)
    assert sum(sizes) <= cap


def test_a_url_the_vendor_takes_as_a_url_leaves_the_whole_cap_to_the_bytes(face_bytes):
    data = face_bytes("obama.jpg")
    images = RequestImages([b64_input(data), ImageInput(url="https://photos.example/b.jpg")], [LocalVendor], Settings())
    refs = images.refs_for(vendor(ImageLimits(total_bytes=len(data)), accepts_urls=True))  # type: ignore[arg-type]
    assert refs[0].image is not None and refs[0].image.data == data  # fits whole: no share given to the URL
    assert refs[1].url == "https://photos.example/b.jpg"


def test_images_are_fitted_to_each_vendors_formats_and_kept_for_the_next(face_bytes):
    png = face_bytes("32bit.png")
    images = RequestImages([b64_input(png)], [LocalVendor, ZolozVendor], STAGE)
    assert images.refs_for(LocalVendor)[0].image.format == "PNG"  # type: ignore[arg-type,union-attr]
    assert images.refs_for(ZolozVendor)[0].image.format == "JPEG"  # type: ignore[arg-type,union-attr]  # JPEG only
    assert images.fingerprints == [hashlib.sha256(png).hexdigest()]  # of what was sent, not what a vendor got
