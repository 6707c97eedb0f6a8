"""Fixtures of the fault-injection suite: the five vendor sandboxes once per module,
and per test the real handlers pointed at them (short timeouts, no cooldowns, no
built-in engine) through the emulated secrets. The machinery is in ``faultkit``."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator

import pytest

from facegate_local.sandboxes.base import Sandbox
from facegate_local.sandboxes.face2 import Face2Sandbox
from facegate_local.sandboxes.jumei import JumeiSandbox
from facegate_local.sandboxes.kuaidi100 import Kuaidi100Sandbox
from facegate_local.sandboxes.shuxun import ShuxunSandbox
from facegate_local.sandboxes.zoloz import ZolozSandbox

from .faultkit import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    SANDBOX_TIMEOUT_S,
    VENDORS,
    Gate,
    Sandboxes,
    clear_service_caches,
)


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    boxes: dict[str, Sandbox] = {
        "shuxun": ShuxunSandbox(timeout_s=SANDBOX_TIMEOUT_S),
        "kuaidi100": Kuaidi100Sandbox(timeout_s=SANDBOX_TIMEOUT_S),
        # Signed responses, so that the bad_signature fault means something for face2.
        "face2": Face2Sandbox(sign_responses=True, timeout_s=SANDBOX_TIMEOUT_S),
        "zoloz": ZolozSandbox(timeout_s=SANDBOX_TIMEOUT_S),
        "jumei": JumeiSandbox(timeout_s=SANDBOX_TIMEOUT_S),
    }
    for box in boxes.values():
        box.start()
        # The sandbox writes headers and body in two sends; with Nagle's algorithm on,
        # the client's delayed ACK holds the body back ~40 ms per request.
        box._server.RequestHandlerClass.disable_nagle_algorithm = True
    try:
        yield Sandboxes(boxes)
    finally:
        # Each stop waits out a 0.5 s poll: stop them side by side.
        stoppers = [threading.Thread(target=box.stop) for box in boxes.values()]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()


@pytest.fixture(scope="session")
def images_b64(face_bytes) -> dict[str, str]:
    """The test photos (base64), and 160-pixel copies of them that most tests send."""
    from PIL import Image

    out = {}
    for name in ("obama.jpg", "obama2.jpg"):
        data = face_bytes(name)
        out[name] = base64.b64encode(data).decode()
        with Image.open(io.BytesIO(data)) as img:
            img.thumbnail((160, 160))
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="JPEG", quality=85)
        out["small-" + name] = base64.b64encode(buf.getvalue()).decode()
    return out


@pytest.fixture
def gate(aws, call_api, monkeypatch, sandboxes, images_b64) -> Iterator[Gate]:
    sandboxes.reset()
    monkeypatch.setenv("FACEGATE_READ_TIMEOUT", str(READ_TIMEOUT_S))
    monkeypatch.setenv("FACEGATE_CONNECT_TIMEOUT", str(CONNECT_TIMEOUT_S))
    # The cooldown has its own test; elsewhere it must not change what a fault does.
    monkeypatch.setenv("FACEGATE_COOLDOWN_FAILURES", "100000")
    # Requests without a vendor must never reach the built-in (dlib) engine here.
    monkeypatch.setenv("FACEGATE_DEFAULT_VENDOR", "shuxun")
    monkeypatch.delenv("FACEGATE_FALLBACK", raising=False)
    monkeypatch.delenv("FACEGATE_STATE_TABLE", raising=False)
    clear_service_caches()
    for vendor in VENDORS:
        aws.put_secret(vendor, sandboxes.secret(vendor))
    yield Gate(aws, sandboxes, call_api, monkeypatch, dict(images_b64))
    sandboxes.reset()
    clear_service_caches()
