"""Pre-screening through the handlers: with FACEGATE_PRESCREEN=faces a photo without a face
never reaches a paid vendor (its sandbox counts no request), is refused NO_FACE, logged as
refused and unbilled, and counted as a billed call avoided; a good pair is answered as
before; a request's "prescreen" overrides the stage both ways."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image as PILImage

from facegate_local.sandboxes.shuxun import ShuxunSandbox


def wall() -> str:
    buf = io.BytesIO()
    PILImage.new("RGB", (640, 480), (190, 185, 170)).save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def shuxun(aws, usage_table):
    sandbox = ShuxunSandbox().start()
    aws.put_secret("shuxun", {**ShuxunSandbox.default_credentials(), "endpoint": sandbox.url})
    yield sandbox
    sandbox.stop()


@pytest.fixture
def stage(aws, monkeypatch):
    def set_mode(mode: str) -> None:
        monkeypatch.setenv("FACEGATE_PRESCREEN", mode)
        aws.reset_caches()

    return set_mode


def usage(call_api) -> dict:
    status, body = call_api("usage", "GET", "/v1/usage")
    assert status == 200, body
    return {(r["vendor"], r["operation"]): r for r in body["vendors"]}


def test_no_face_is_refused_before_the_vendor(aws, call_api, b64, shuxun, stage):
    stage("faces")
    body = {"image1": {"base64": b64("obama.jpg")}, "image2": {"base64": wall()}, "vendor": "shuxun"}
    status, answer = call_api("compare", "POST", "/v1/compare", body)
    assert (status, answer["error"]["code"]) == (422, "NO_FACE"), answer
    assert "image2" in answer["error"]["message"] and "screened locally" in answer["error"]["message"]
    assert answer["error"]["vendor"] is None
    assert shuxun.requests == 0
    (record,) = aws.records()
    assert record["billed"] is False and record["error_code"] == "NO_FACE" and "attempts" not in record
    assert record["prescreen"]["outcome"] == "refused" and record["prescreen"]["check"] == "no_face"
    assert record["prescreen"]["image"] == "image2" and record["prescreen"]["avoided"] == ["shuxun"]
    row = usage(call_api)[("shuxun", "compare")]
    assert row["billed_calls_avoided"] == 1 and row["calls"] == 0 and row["billed"] == 0


def test_a_good_pair_is_answered_as_before(aws, call_api, b64, shuxun, stage):
    stage("faces")
    body = {"image1": {"base64": b64("obama.jpg")}, "image2": {"base64": b64("obama2.jpg")}, "vendor": "shuxun"}
    status, answer = call_api("compare", "POST", "/v1/compare", body)
    assert status == 200 and answer["decision"] == "match" and answer["billed"] is True, answer
    assert shuxun.requests == 1
    (record,) = aws.records()
    assert record["prescreen"]["outcome"] == "passed" and record["prescreen"]["screened"] == 2
    assert usage(call_api)[("shuxun", "compare")]["billed_calls_avoided"] == 0


def test_a_request_may_turn_the_screen_off(aws, call_api, b64, shuxun, stage):
    stage("faces")
    body = {"image1": {"base64": b64("obama.jpg")}, "image2": {"base64": wall()}, "vendor": "shuxun"}
    call_api("compare", "POST", "/v1/compare", {**body, "prescreen": False})
    assert shuxun.requests == 1  # sent as asked: the sandbox answers what it answers
    (record,) = aws.records()
    assert "prescreen" not in record


def test_a_request_may_turn_the_screen_on(aws, call_api, b64, shuxun, stage):
    stage("off")
    body = {"image1": {"base64": wall()}, "image2": {"base64": b64("obama2.jpg")}, "vendor": "shuxun"}
    call_api("compare", "POST", "/v1/compare", body)
    assert shuxun.requests == 1  # the stage does not screen
    status, answer = call_api("compare", "POST", "/v1/compare", {**body, "prescreen": True})
    assert (status, answer["error"]["code"]) == (422, "NO_FACE"), answer
    assert shuxun.requests == 1


def test_the_free_engine_is_never_screened(aws, call_api, b64, stage):
    stage("quality")
    body = {"image1": {"base64": b64("obama.jpg")}, "image2": {"base64": wall()}, "vendor": "local"}
    status, answer = call_api("compare", "POST", "/v1/compare", body)
    assert (status, answer["error"]["code"]) == (422, "NO_FACE"), answer
    assert "screened locally" not in answer["error"]["message"]  # the engine's own answer
    (record,) = aws.records()
    assert "prescreen" not in record


def test_without_the_engine_the_screen_is_skipped_and_said(aws, call_api, b64, shuxun, stage, monkeypatch):
    from facegate import service

    stage("faces")
    monkeypatch.setattr(service, "engine_available", lambda: False)
    body = {"image1": {"base64": b64("obama.jpg")}, "image2": {"base64": wall()}, "vendor": "shuxun"}
    call_api("compare", "POST", "/v1/compare", body)
    assert shuxun.requests == 1
    (record,) = aws.records()
    assert record["prescreen"]["outcome"] == "skipped" and record["prescreen"]["check"] == "engine_unavailable"
