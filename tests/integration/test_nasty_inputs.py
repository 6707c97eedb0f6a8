"""The nasty-input corpus (tests/nasty_inputs.py) against the real template's routes
and handlers in-process: the local gateway layer (``LocalApi.handle``: routing, API
key, body limit, the proxy event) in front of each function, AWS in moto. Every
case gets its contract 4xx, no handler crashes, no vendor is called, and the API
answers a good request afterwards."""

from __future__ import annotations

import base64
import io
import json
import os
import sys

import pytest

from facegate.router import Router
from facegate_local.batch import reset_caches
from facegate_local.server import LocalApi, build_runtime

from ..nasty_inputs import CASES, Nasty

KEY = "nasty-key"
ERROR_FIELDS = {"code", "message", "retryable", "vendor", "vendor_code", "vendor_message"}


@pytest.fixture(scope="module")
def local_api():
    """template.yaml served in-process (resources in moto, every handler imported);
    the process environment and modules are put back afterwards."""
    from facegate import idempotency

    saved, modules = dict(os.environ), set(sys.modules)
    log = io.StringIO()
    os.environ["FACEGATE_API_KEY"] = KEY
    runtime = build_runtime(os.environ, log=log)
    reset_caches()
    idempotency.persistence_layer.cache_clear()
    yield runtime.api
    runtime.close()
    os.environ.clear()
    os.environ.update(saved)
    for name in set(sys.modules) - modules:
        if name.startswith("facegate_fn_"):
            del sys.modules[name]
    reset_caches()
    idempotency.persistence_layer.cache_clear()


@pytest.fixture
def vendor_calls(monkeypatch) -> list[str]:
    calls: list[str] = []
    original = Router._try  # every vendor (and engine) call, whatever the strategy, goes through here

    def spy(self, planned, *args, **kw):
        calls.append(planned.id)
        return original(self, planned, *args, **kw)

    monkeypatch.setattr(Router, "_try", spy)
    return calls


def send(api: LocalApi, case: Nasty) -> tuple[int, dict, list[tuple[str, str]]]:
    headers = list(case.headers) + ([("x-api-key", KEY)] if case.api_key else [])
    reply = api.handle(case.method, case.target, headers, case.body)
    return reply.status, json.loads(reply.body), reply.headers


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_nasty_input_gets_its_contract_error(local_api, vendor_calls, case):
    status, body, _ = send(local_api, case)

    assert (status, body.get("error", {}).get("code")) == (case.status, case.code), body
    assert set(body) == {"request_id", "error"}
    assert set(body["error"]) == ERROR_FIELDS
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert vendor_calls == []
    assert " raised:" not in local_api.log.getvalue()  # no handler crashed on the way


def test_the_corpus_covers_every_route_and_kind():
    targets = {c.target.split("/")[2] for c in CASES if c.target.startswith("/v1/")}
    assert {"compare", "detect", "features", "verify-identity", "results", "vendors", "batches"} <= targets
    assert len(CASES) >= 80
    assert {c.method for c in CASES} >= {"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"}


def test_the_api_answers_a_good_request_after_the_corpus(local_api, vendor_calls, face_bytes):
    photo = base64.b64encode(face_bytes("obama.jpg")).decode()
    good = Nasty(
        "good",
        "POST",
        "/v1/compare",
        json.dumps({"image1": {"base64": photo}, "image2": {"base64": photo}}).encode(),
    )
    status, body, _ = send(local_api, good)
    assert status == 200, body
    assert body["decision"] == "match"
    assert vendor_calls == ["local"]
    status, body, _ = send(local_api, Nasty("vendors", "GET", "/v1/vendors"))
    assert status == 200, body
