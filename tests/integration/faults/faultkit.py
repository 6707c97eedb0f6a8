"""Shared machinery of the fault-injection suite (used by its conftest and tests).

A ``Ledger`` wraps each sandbox's request handling and records, for every request a
sandbox receives, which test request it arrived during (a tag the test sets) and
whether the sandbox billed it: the sandboxes' own per-request knowledge, which
facegate's recorded attempts are checked against. ``Gate`` is the API under test
(the real Lambda handlers, in-process) wired to the sandboxes.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from facegate_local.sandboxes.base import Sandbox, SandboxRequest, SandboxResponse
from facegate_local.sandboxes.jumei import DEFAULT_ID_NUMBER, DEFAULT_NAME

# How long a sandbox "timeout" fault stalls, and facegate's read timeout here: the
# second is well below the first, so a timeout fault is always a read timeout.
SANDBOX_TIMEOUT_S = 1.5
READ_TIMEOUT_S = 0.4
CONNECT_TIMEOUT_S = 0.5

COMPARE_VENDORS = ("shuxun", "kuaidi100", "face2", "zoloz")
VENDORS = (*COMPARE_VENDORS, "jumei")
IDENTITY = {"name": DEFAULT_NAME, "id_number": DEFAULT_ID_NUMBER}  # the person JumeiSandbox knows

# Where each operation's handler lives and its route.
ROUTES = {
    "compare": "/v1/compare",
    "detect": "/v1/detect",
    "features": "/v1/features",
    "verify_identity": "/v1/verify-identity",
}


# --- the sandboxes' own record of what they received and billed --------------------------


@dataclass
class Dispatch:
    """One request as a sandbox saw it."""

    vendor: str
    tag: Any  # the test request it arrived during
    path: str
    billed: bool | None = None  # None until the sandbox has answered (or dropped the connection)


class Ledger:
    def __init__(self) -> None:
        self.tag: Any = None
        self.entries: list[Dispatch] = []
        self._lock = threading.Lock()

    def wrap(self, vendor: str, box: Sandbox) -> None:
        original = box._dispatch

        def dispatch(req: SandboxRequest) -> SandboxResponse | None:
            entry = Dispatch(vendor, self.tag, req.path)
            with self._lock:
                self.entries.append(entry)
            resp = original(req)
            # Exactly the sandbox's own rule for its ``billed`` counter.
            entry.billed = resp is not None and resp.billed
            return resp

        box._dispatch = dispatch  # type: ignore[method-assign]

    def clear(self) -> None:
        with self._lock:
            self.entries = []
        self.tag = None

    def settle(self, within_s: float = SANDBOX_TIMEOUT_S + 3.0) -> list[Dispatch]:
        """Wait for stalled sandbox threads (timeouts, slow answers) to finish; return every entry."""
        end = time.monotonic() + within_s
        while any(e.billed is None for e in self.entries) and time.monotonic() < end:
            time.sleep(0.05)
        return list(self.entries)


class Sandboxes(dict[str, Sandbox]):
    def __init__(self, boxes: dict[str, Sandbox]) -> None:
        super().__init__(boxes)
        self.ledger = Ledger()
        for vendor, box in boxes.items():
            self.ledger.wrap(vendor, box)

    def reset(self) -> None:
        for box in self.values():
            box.reset()
            box.latency_s = 0.0
        self.ledger.clear()

    def secret(self, vendor: str) -> dict[str, Any]:
        box = self[vendor]
        return {**box.default_credentials(), "endpoint": box.url}

    def requests(self) -> dict[str, int]:
        return {v: box.requests for v, box in self.items()}

    def billed(self) -> dict[str, int]:
        return {v: box.billed for v, box in self.items()}


# --- facegate pointed at them ------------------------------------------------------------


def clear_service_caches() -> None:
    """The next handler call builds its service (settings, transport, cooldown book,
    vendor secrets) afresh."""
    from aws_lambda_powertools.utilities import parameters

    from facegate import config, service

    config.settings.cache_clear()
    service.default_service.cache_clear()
    parameters.clear_caches()


@dataclass
class Gate:
    """The API under test, wired to the sandboxes."""

    aws: Any
    boxes: Sandboxes
    call_api: Any
    monkeypatch: pytest.MonkeyPatch
    images: dict[str, str] = field(default_factory=dict)  # name -> base64

    def configure(self, **env: str) -> None:
        """Set FACEGATE_* variables and rebuild the service from them (next call)."""
        for name, value in env.items():
            self.monkeypatch.setenv(f"FACEGATE_{name.upper()}", value)
        clear_service_caches()

    def replace_secret(self, vendor: str, value: dict[str, Any]) -> None:
        """Overwrite a vendor's secret in the emulated Secrets Manager (the ``aws``
        fixture's stage), and forget every cached copy."""
        import json
        import os

        import boto3

        stage = os.environ["FACEGATE_STAGE"]
        boto3.client("secretsmanager").put_secret_value(
            SecretId=f"facegate/{stage}/vendors/{vendor}", SecretString=json.dumps(value)
        )
        clear_service_caches()

    def image(self, name: str = "obama.jpg", *, full: bool = False) -> dict[str, str]:
        """A test photo as a base64 image input: by default a 160-pixel copy (the
        sandboxes do not match faces, and small images keep the suite fast)."""
        return {"base64": self.images[name if full else "small-" + name]}

    def call(self, op: str, body: Any, *, tag: Any = None, raw: str | None = None) -> tuple[int, Any]:
        self.boxes.ledger.tag = tag
        if raw is not None:
            return self.call_api(op, "POST", ROUTES[op], raw_body=raw)
        return self.call_api(op, "POST", ROUTES[op], body)

    def compare(self, vendor: str | None = None, fallback: list[str] | None = None, **more: Any):
        body: dict[str, Any] = {"image1": self.image("obama.jpg"), "image2": self.image("obama2.jpg"), **more}
        if vendor is not None:
            body["vendor"] = vendor
        if fallback:
            body["fallback"] = fallback
        return self.call("compare", body)

    def verify_identity(self, **more: Any):
        body = {**IDENTITY, "image": self.image("obama.jpg"), "vendor": "jumei", **more}
        return self.call("verify_identity", body)

    def vendors(self) -> dict[str, dict]:
        status, body = self.call_api("vendors", "GET", "/v1/vendors")
        assert status == 200, body
        return {v["id"]: v for v in body["vendors"]}

    def record(self, request_id: str) -> dict[str, Any]:
        item = self.aws.table.get_item(Key={"request_id": request_id}, ConsistentRead=True).get("Item")
        assert item is not None, f"no results-log record for {request_id}"
        return item

    def all_records(self) -> list[dict[str, Any]]:
        """Every results-log record (a scan answers at most 1 MB a page: follow the pages)."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"ConsistentRead": True}
        while True:
            page = self.aws.table.scan(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @staticmethod
    def attempts(record_or_response: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
        """(vendor, outcome, billed) of each attempt; a null ``billed`` is absent in the log."""
        return [(a["vendor"], a["outcome"], a.get("billed")) for a in record_or_response.get("attempts", [])]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
