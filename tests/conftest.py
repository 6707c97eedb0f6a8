"""Fixtures shared by every test: the test photos and a clean, offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEGATE_SHARED", ROOT.parent / "shared"))
FACES = SHARED / "testdata" / "faces"

# Every test runs offline against emulated AWS; nothing may reach a real account.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_REGION="us-east-1",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_METRICS_NAMESPACE="Facegate",
    POWERTOOLS_SERVICE_NAME="facegate",
    POWERTOOLS_DEV="false",
    POWERTOOLS_LOG_LEVEL="WARNING",
)


@pytest.fixture(scope="session")
def faces() -> Path:
    assert FACES.is_dir(), f"test photos not found at {FACES}"
    return FACES


@pytest.fixture(scope="session")
def face_bytes(faces):
    cache: dict[str, bytes] = {}

    def read(name: str) -> bytes:
        if name not in cache:
            cache[name] = (faces / name).read_bytes()
        return cache[name]

    return read
