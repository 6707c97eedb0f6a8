"""Batches end to end in-process: the template's bucket, queues and tables in moto,
the batch functions driven like Lambda's SQS event source mappings
(``facegate_local.batch``), commercial vendors played by their loopback sandboxes."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from moto import mock_aws

from facegate_local.batch import LocalBatches, reset_caches
from facegate_local.sandboxes.jumei import JumeiSandbox
from facegate_local.sandboxes.shuxun import ShuxunSandbox

from .batchkit import READ_TIMEOUT_S, SANDBOX_STALL_S, STAGE, Batches, closed_port


@pytest.fixture(scope="module")
def shuxun() -> Iterator[ShuxunSandbox]:
    box = ShuxunSandbox(timeout_s=SANDBOX_STALL_S).start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def jumei() -> Iterator[JumeiSandbox]:
    box = JumeiSandbox(timeout_s=SANDBOX_STALL_S).start()
    yield box
    box.stop()


@pytest.fixture(scope="session")
def small_photos(face_bytes) -> dict[str, bytes]:
    """120-pixel JPEG copies of the test photos: the vendors' sandboxes only check that
    an image is one, and small ones keep a 1,000-item run quick."""
    from PIL import Image

    out = {}
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        img = Image.open(io.BytesIO(face_bytes(name))).convert("RGB")
        img.thumbnail((120, 120))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out[name] = buf.getvalue()
    return out


@contextmanager
def open_batches(stage: str, shuxun, jumei, photos) -> Iterator[Batches]:
    shuxun.reset()
    jumei.reset()
    saved = dict(os.environ)
    kuaidi_down = {
        "secret_key": "k",
        "secret_secret": "s",
        "secret_code": "c",
        "endpoint": f"http://127.0.0.1:{closed_port()}",
    }
    secrets = {
        "shuxun": {**shuxun.default_credentials(), "endpoint": shuxun.url},
        "jumei": {**jumei.default_credentials(), "endpoint": jumei.url},
        "kuaidi100": kuaidi_down,
    }
    with mock_aws():
        try:
            local = LocalBatches(
                stage=stage,
                region="us-east-1",
                secret_values={f"facegate/{stage}/vendors/{v}": json.dumps(c) for v, c in secrets.items()},
                env_overrides={
                    "FACEGATE_BATCH_RETRY_BASE_S": "0",  # retry at once: the emulation has no clock to wait on
                    "FACEGATE_READ_TIMEOUT": str(READ_TIMEOUT_S),
                    "FACEGATE_COOLDOWN_FAILURES": "100000",  # injected faults must not open cooldowns
                    "FACEGATE_DEFAULT_VENDOR": "shuxun",
                    "POWERTOOLS_LOG_LEVEL": "ERROR",
                },
            )
            b = Batches(local, shuxun, jumei)
            b.upload_photos(photos)
            yield b
        finally:
            os.environ.clear()
            os.environ.update(saved)
            reset_caches()


@pytest.fixture
def batches(shuxun, jumei, small_photos) -> Iterator[Batches]:
    with open_batches(STAGE, shuxun, jumei, small_photos) as b:
        yield b


@pytest.fixture
def dev_batches(shuxun, jumei, small_photos) -> Iterator[Batches]:
    """Stage dev in us-east-1, so the names in events/*.json are the stack's own."""
    with open_batches("dev", shuxun, jumei, small_photos) as b:
        yield b
