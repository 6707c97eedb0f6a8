"""Every response carries X-Request-Id (README, the contract): template.yaml served
in-process over real HTTP, every route it declares, and every error the gateway
(or the local HTTP server in front of it) answers itself."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from facegate_local.batch import reset_caches
from facegate_local.gateway import MAX_BODY_BYTES
from facegate_local.httpd import make_http_server
from facegate_local.runtime import build_runtime
from facegate_local.template import Resolver, Template, routes

KEY = "request-id-key"
ROOT = Path(__file__).resolve().parents[3]
ERROR_FIELDS = {"code", "message", "retryable", "vendor", "vendor_code", "vendor_message"}


@pytest.fixture(scope="module")
def served():
    """template.yaml served on loopback (resources in moto, every handler imported); the
    process environment and modules are put back afterwards."""
    from facegate import idempotency

    saved, modules = dict(os.environ), set(sys.modules)
    os.environ["FACEGATE_API_KEY"] = KEY
    runtime = build_runtime(os.environ, log=io.StringIO())
    reset_caches()
    idempotency.persistence_layer.cache_clear()
    httpd = make_http_server(runtime.api, 0, log=io.StringIO())
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], runtime.api
    httpd.shutdown()
    httpd.server_close()
    runtime.close()
    os.environ.clear()
    os.environ.update(saved)
    for name in set(sys.modules) - modules:
        if name.startswith("facegate_fn_"):
            del sys.modules[name]
    reset_caches()
    idempotency.persistence_layer.cache_clear()


@pytest.fixture(scope="module")
def port(served) -> int:
    return served[0]


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(None if len(body) > MAX_BODY_BYTES else body or None)
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def raw(port: int, data: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Bytes on a socket (what http.client will not send); the parsed answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.headers, response.read()


def assert_gateway_error(status: int, headers, body: bytes, expected: int) -> None:
    """The contract's error shape, and X-Request-Id naming its request_id."""
    assert status == expected, body[:300]
    parsed = json.loads(body)
    assert set(parsed) == {"request_id", "error"} and set(parsed["error"]) == ERROR_FIELDS
    assert headers["X-Request-Id"] == parsed["request_id"]


def template_routes(*, keyed_only: bool = False) -> list[tuple[str, str]]:
    template = Template.load(ROOT / "template.yaml")
    found = routes(template, Resolver(template))
    # A path parameter gets a value (no such record: the function still answers).
    return sorted(
        {(r.method, r.path.replace("{", "x").replace("}", "")) for r in found if r.api_key_required or not keyed_only}
    )


ROUTES = template_routes()
# GET /openapi.json needs no key (ARCHITECTURE.md); every other route does.
KEYED = template_routes(keyed_only=True)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_every_route_answers_with_x_request_id(port, method, path):
    status, headers, body = request(port, method, path, b"{}" if method in ("POST", "PUT") else b"", {"x-api-key": KEY})
    assert headers["X-Request-Id"], (status, body[:300])
    if body and headers.get_content_type() == "application/json" and "request_id" in json.loads(body):
        assert headers["X-Request-Id"] == json.loads(body)["request_id"]


@pytest.mark.parametrize(("method", "path"), KEYED, ids=[f"{m} {p}" for m, p in KEYED])
def test_a_missing_key_is_a_403_with_x_request_id_on_every_route(port, method, path):
    assert_gateway_error(*request(port, method, path), 403)


def test_an_unknown_route_is_a_404_with_x_request_id(port):
    assert_gateway_error(*request(port, "GET", "/v1/nothing", headers={"x-api-key": KEY}), 404)


def test_a_wrong_method_is_a_405_with_x_request_id(port):
    method, path = ROUTES[0]
    wrong = "DELETE" if method != "DELETE" else "PATCH"
    status, headers, body = request(port, wrong, path, headers={"x-api-key": KEY})
    assert_gateway_error(status, headers, body, 405)
    assert headers["Allow"]


def test_a_body_over_the_limit_is_a_413_with_x_request_id(port):
    body = b"x" * (MAX_BODY_BYTES + 1)
    assert_gateway_error(*request(port, "POST", "/v1/compare", body, {"x-api-key": KEY}), 413)


def test_a_failing_function_is_a_502_with_x_request_id(served, monkeypatch):
    port, api = served
    route = next(r for r in api.routes if (r.method, r.path) == ("GET", "/v1/vendors"))

    def crash(event, context):
        raise RuntimeError("the function failed")

    monkeypatch.setattr(api.functions[route.function], "handler", crash)
    assert_gateway_error(*request(port, "GET", "/v1/vendors", headers={"x-api-key": KEY}), 502)


def test_a_chunked_body_is_a_411_in_the_contract_shape(port):
    request_bytes = (
        b"POST /v1/compare HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: " + KEY.encode() + b"\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    )
    status, headers, body = raw(port, request_bytes)
    assert_gateway_error(status, headers, body, 411)
    assert json.loads(body)["error"]["code"] == "INVALID_REQUEST"  # the template's DEFAULT_4XX names it
    assert headers["Connection"] == "close"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /v1/compare HTTP/1.1\r\nHost: h\r\nContent-Length: 1_0\r\n\r\n", 400),
        (b"POST /v1/compare HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n{}", 400),
        (b"GET /v1/vendors HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /v1/results/" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
        (b"GET /v1/vendors HTTP/2.0\r\nHost: h\r\n\r\n", 400),
    ],
    ids=["bad-content-length", "short-body", "huge-header", "huge-uri", "http-2"],
)
def test_what_the_http_server_refuses_carries_x_request_id(port, request_bytes, status):
    assert_gateway_error(*raw(port, request_bytes), status)
