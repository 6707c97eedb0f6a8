"""Compare, detect and features end to end through the handlers on the built-in engine."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from PIL import Image


def test_same_person_matches_and_is_logged_without_image_data(aws, call_api, b64, face_bytes):
    status, got = call_api(
        "compare",
        "POST",
        "/v1/compare",
        {
            "image1": {"base64": b64("obama.jpg")},
            "image2": {"base64": "data:image/jpeg;base64," + b64("obama2.jpg")},
        },
    )
    assert status == 200, got
    assert (got["decision"], got["match"], got["vendor"], got["operation"]) == (
        "match",
        True,
        "local",
        "compare",
    )
    assert 0 <= got["threshold"] < got["similarity"] <= 1
    assert got["latency_ms"] >= 0 and got["billed"] is False
    assert got["attempts"] == [
        {
            "vendor": "local",
            "outcome": "ok",
            "billed": False,
            "latency_ms": got["attempts"][0]["latency_ms"],
            "reason": "ordered: as stated, 1st of 1",
        }
    ]

    (record,) = aws.records()
    assert record["request_id"] == got["request_id"]
    assert record["decision"] == "match"
    assert record["image_sha256"] == [hashlib.sha256(face_bytes(n)).hexdigest() for n in ("obama.jpg", "obama2.jpg")]
    assert b64("obama.jpg")[:200] not in str(record)
    assert record["expires_at"] > 0


@pytest.mark.parametrize("level", ["low", "normal", "high"])
def test_different_people_do_not_match_at_any_level(aws, call_api, b64, level):
    status, got = call_api(
        "compare",
        "POST",
        "/v1/compare",
        {
            "image1": {"base64": b64("obama.jpg")},
            "image2": {"base64": b64("biden.jpg")},
            "security_level": level,
        },
    )
    assert status == 200, got
    assert (got["decision"], got["match"], got["security_level"]) == ("no_match", False, level)
    assert got["similarity"] < got["threshold"]


def test_rgba_png_compares(aws, call_api, b64):
    status, got = call_api(
        "compare",
        "POST",
        "/v1/compare",
        {"image1": {"base64": b64("32bit.png")}, "image2": {"base64": b64("obama.jpg")}},
    )
    assert status == 200, got
    assert got["decision"] == "match"


def test_no_face_is_a_422_naming_the_image(aws, call_api, b64):
    buf = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((300, 300)).save(buf, format="JPEG")
    blank = base64.b64encode(buf.getvalue()).decode()
    status, got = call_api(
        "compare",
        "POST",
        "/v1/compare",
        {"image1": {"base64": b64("obama.jpg")}, "image2": {"base64": blank}},
    )
    assert status == 422
    assert (got["error"]["code"], got["error"]["vendor"]) == ("NO_FACE", "local")
    assert "image2" in got["error"]["message"]
    (record,) = aws.records()
    assert (record["error_code"], record["vendor"]) == ("NO_FACE", "local")


def test_detect_and_features(aws, call_api, b64):
    status, got = call_api("detect", "POST", "/v1/detect", {"image": {"base64": b64("obama.jpg")}})
    assert status == 200, got
    assert got["face_count"] == 1 == len(got["faces"])
    box = got["faces"][0]["box"]
    assert box["left"] >= 0 and box["left"] + box["width"] <= got["image_width"]
    assert box["top"] >= 0 and box["top"] + box["height"] <= got["image_height"]

    status, got = call_api("features", "POST", "/v1/features", {"image": {"base64": b64("obama.jpg")}})
    assert status == 200, got
    assert got["dimension"] == 128 == len(got["embedding"])
    assert got["model"]
    records = {r["operation"]: r for r in aws.records()}
    assert records["detect"]["face_count"] == 1
    assert records["features"]["dimension"] == 128
    assert "embedding" not in records["features"]


def test_s3_image_input(aws, call_api, face_bytes, monkeypatch):
    """The stage's bucket under FACEGATE_INPUTS_PREFIX, and the other buckets
    FACEGATE_INPUT_BUCKETS lists: what template.yaml grants the functions."""
    import boto3

    monkeypatch.setenv("FACEGATE_BUCKET", "facegate-test-stage")
    monkeypatch.setenv("FACEGATE_INPUTS_PREFIX", "inputs/")
    monkeypatch.setenv("FACEGATE_INPUT_BUCKETS", "facegate-test-images")
    aws.reset_caches()
    s3 = boto3.client("s3")
    for bucket, key in (("facegate-test-stage", "inputs/obama2.jpg"), ("facegate-test-images", "in/obama2.jpg")):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=face_bytes("obama2.jpg"))
    status, got = call_api(
        "compare",
        "POST",
        "/v1/compare",
        {
            "image1": {"s3": {"key": "inputs/obama2.jpg"}},
            "image2": {"s3": {"bucket": "facegate-test-images", "key": "in/obama2.jpg"}},
        },
    )
    assert status == 200, got
    assert got["decision"] == "match"

    status, got = call_api(
        "compare",
        "POST",
        "/v1/compare",
        {
            "image1": {"s3": {"bucket": "facegate-test-images", "key": "missing.jpg"}},
            "image2": {"s3": {"key": "inputs/obama2.jpg"}},
        },
    )
    assert (status, got["error"]["code"]) == (422, "IMAGE_UNAVAILABLE")


def test_answers_leave_out_fields_that_do_not_apply(aws, call_api, b64):
    """A plain compare carries no consensus or Kuaidi100 fields at all (not nulls); the
    nulls that mean something stay: match when uncertain, billed when unknown."""
    status, got = call_api(
        "compare",
        "POST",
        "/v1/compare",
        {"image1": {"base64": b64("obama.jpg")}, "image2": {"base64": b64("biden.jpg")}},
    )
    assert status == 200, got
    assert not {"consensus_rule", "verdicts", "face_tokens"} & set(got)
    assert {"match", "billed", "vendor_request_id", "vendor_score"} <= set(got)
    status, got = call_api("detect", "POST", "/v1/detect", {"image": {"base64": b64("obama.jpg")}})
    assert status == 200, got
    assert {"image_width", "image_height"} <= set(got) and got["face_count"] == 1
    assert "confidence" in got["faces"][0]


@pytest.mark.parametrize(
    ("s3", "why"),
    [
        ({"key": "batches/x.jsonl"}, "inputs/"),  # the stage's bucket outside the prefix
        ({"bucket": "facegate-test-stage", "key": "results/x.jsonl"}, "inputs/"),
        ({"bucket": "someone-elses-bucket", "key": "inputs/a.jpg"}, "ExtraInputBuckets"),
        ({"bucket": "a/../b", "key": "inputs/a.jpg"}, "bucket"),  # was a botocore ParamValidationError: 500
        ({"bucket": "Upper_Case", "key": "inputs/a.jpg"}, "bucket"),
        ({"bucket": "192.168.1.1", "key": "inputs/a.jpg"}, "bucket"),
        ({"bucket": "xn--abc", "key": "inputs/a.jpg"}, "bucket"),
        ({"bucket": "ab", "key": "inputs/a.jpg"}, "bucket"),
        ({"key": "inputs/../results/x.jsonl"}, "segments"),
        ({"key": "inputs/./a.jpg"}, "segments"),
        ({"key": "inputs//a.jpg"}, "segments"),
        ({"key": "inputs/"}, "segments"),
        ({"key": "/inputs/a.jpg"}, "'/'"),
        ({"key": "inputs/a\x00.jpg"}, "NUL"),  # refused with the body's text, before the model sees it
        ({"key": "inputs/a\n.jpg"}, "control"),
        ({"key": "inputs/" + "é" * 600}, "1024 bytes"),
    ],
)
def test_s3_images_outside_what_the_stage_reads_are_the_callers_error(aws, call_api, monkeypatch, s3, why):
    import boto3

    monkeypatch.setenv("FACEGATE_BUCKET", "facegate-test-stage")
    monkeypatch.setenv("FACEGATE_INPUTS_PREFIX", "inputs/")
    aws.reset_caches()
    boto3.client("s3").create_bucket(Bucket="facegate-test-stage")
    calls = []
    monkeypatch.setattr("facegate.inputs._s3", lambda: calls.append(1))  # no S3 call at all
    status, got = call_api("compare", "POST", "/v1/compare", {"image1": {"s3": s3}, "image2": {"s3": s3}})
    assert (status, got["error"]["code"]) == (400, "INVALID_REQUEST"), got
    assert why in got["error"]["message"]
    assert calls == []
