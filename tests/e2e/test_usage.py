"""`make run` with two API keys and the vendor sandboxes: GET /v1/usage answers each key
its own calls, per vendor and operation, priced from FACEGATE_VENDOR_PRICES."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime

import pytest

KEY_A, KEY_B = "usage-key-a", "usage-key-b"


def grey_wall_jpeg() -> bytes:
    """A photo of a plain wall: no face to find."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (640, 480), (182, 176, 168)).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def server(local_server_factory):
    return local_server_factory(
        FACEGATE_API_KEY=KEY_A,
        FACEGATE_API_KEYS=KEY_B,
        FACEGATE_SANDBOXES="1",
        FACEGATE_VENDOR_PRICES='{"shuxun": 0.1}',
        FACEGATE_PRICE_CURRENCY="USD",
    )


def test_each_key_sees_its_own_usage(server, face_bytes):
    image = {"base64": base64.b64encode(face_bytes("obama.jpg")).decode()}
    other = {"base64": base64.b64encode(face_bytes("obama2.jpg")).decode()}
    wall = {"base64": base64.b64encode(grey_wall_jpeg()).decode()}

    def post(key: str, body: dict) -> int:
        with server.session() as s:
            return s.post(
                f"{server.base_url}/v1/compare", json=body, headers={"x-api-key": key}, timeout=120
            ).status_code

    assert post(KEY_A, {"image1": image, "image2": other, "vendor": "shuxun"}) == 200
    assert post(KEY_A, {"image1": image, "image2": other, "vendor": "shuxun"}) == 200
    assert post(KEY_A, {"image1": image, "image2": other, "vendor": "local"}) == 200
    assert post(KEY_B, {"image1": image, "image2": other, "vendor": "shuxun"}) == 200
    assert post(KEY_B, {"image1": image}) == 400  # no vendor tried: not counted
    # Screened on the engine and refused before Shuxun was asked: a billed call avoided, not a call.
    assert post(KEY_B, {"image1": wall, "image2": other, "vendor": "shuxun", "prescreen": True}) == 422

    today = datetime.now(UTC).date().isoformat()

    def usage(key: str) -> dict:
        with server.session() as s:
            r = s.get(f"{server.base_url}/v1/usage", params={"from": today, "to": today}, headers={"x-api-key": key})
        assert r.status_code == 200, r.text
        return r.json()

    a, b = usage(KEY_A), usage(KEY_B)
    assert a == {
        "from": today,
        "to": today,
        "currency": "USD",
        "vendors": [
            {"vendor": "local", "operation": "compare", "calls": 1, "billed": 0, "billing_unknown": 0, "errors": 0,
             "billed_calls_avoided": 0, "estimated_cost": 0.0},
            {"vendor": "shuxun", "operation": "compare", "calls": 2, "billed": 2, "billing_unknown": 0, "errors": 0,
             "billed_calls_avoided": 0, "estimated_cost": 0.2},
        ],
    }  # fmt: skip
    assert b["vendors"] == [
        {"vendor": "shuxun", "operation": "compare", "calls": 1, "billed": 1, "billing_unknown": 0, "errors": 0,
         "billed_calls_avoided": 1, "estimated_cost": 0.1},
    ]  # fmt: skip
    with server.session() as s:  # and only with a key
        assert s.get(f"{server.base_url}/v1/usage").status_code == 403
