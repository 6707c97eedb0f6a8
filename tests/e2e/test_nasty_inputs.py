"""The nasty-input corpus (tests/nasty_inputs.py) against `make run` over real HTTP,
plus what only a socket can send (broken Content-Length, request lines, oversized
headers, unknown methods). Raw ``http.client``/sockets, so nothing is tidied on the
way. Vendors are sandboxes in this process, counting every request they get; the
default vendor is one of them, so a request that slipped through would be counted."""

from __future__ import annotations

import base64
import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest

from facegate_local.gateway import MAX_BODY_BYTES
from facegate_local.sandboxes.face2 import Face2Sandbox
from facegate_local.sandboxes.jumei import JumeiSandbox

from ..nasty_inputs import CASES, Nasty

pytestmark = pytest.mark.e2e

ERROR_FIELDS = {"code", "message", "retryable", "vendor", "vendor_code", "vendor_message"}
KEY = "nasty-e2e-key"


@pytest.fixture(scope="module")
def vendors():
    face2, jumei = Face2Sandbox().start(), JumeiSandbox().start()
    yield {"face2": face2, "jumei": jumei}
    face2.stop()
    jumei.stop()


@pytest.fixture(scope="module")
def server(local_server_factory, vendors, tmp_path_factory):
    credentials = tmp_path_factory.mktemp("nasty") / "credentials.json"
    credentials.write_text(
        json.dumps({v: {**box.default_credentials(), "endpoint": box.url} for v, box in vendors.items()})
    )
    return local_server_factory(
        FACEGATE_CREDENTIALS=str(credentials),
        FACEGATE_API_KEY=KEY,
        FACEGATE_DEFAULT_VENDOR="face2",
        FACEGATE_ALLOW_HTTP_URLS="true",  # the sandboxes speak plain http on loopback
    )


def _connection(server) -> http.client.HTTPConnection:
    parts = urlsplit(server.base_url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)


def send(server, case: Nasty) -> tuple[int, bytes]:
    conn = _connection(server)
    try:
        conn.putrequest(case.method, case.target, skip_host=False, skip_accept_encoding=True)
        for name, value in case.headers:
            conn.putheader(name, value.encode("utf-8"))  # bytes: sent as they are
        if case.api_key:
            conn.putheader("x-api-key", KEY)
        conn.putheader("Content-Length", str(len(case.body)))
        # Over the limit the server answers from the headers and closes without reading
        # the body, so a client still sending it gets a broken pipe: send none, as a
        # client waiting on "Expect: 100-continue" would.
        conn.endheaders(None if len(case.body) > MAX_BODY_BYTES else case.body or None)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def send_raw(server, request: bytes) -> tuple[int, bytes]:
    """Bytes on a socket; the status and body of the answer (Content-Length framed)."""
    parts = urlsplit(server.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_contract_error(status: int, raw: bytes, expected_status: int, code: str | None) -> None:
    body = json.loads(raw)
    assert (status, body["error"]["code"] if code else None) == (expected_status, code), body
    assert set(body) == {"request_id", "error"}
    assert set(body["error"]) == ERROR_FIELDS
    assert body["request_id"] and body["error"]["message"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_nasty_input_over_http(server, vendors, case):
    status, raw = send(server, case)
    assert_contract_error(status, raw, case.status, case.code)
    assert sum(box.requests for box in vendors.values()) == 0


def _request(line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in (b"Host: 127.0.0.1", *headers)) + b"\r\n" + body


SOCKET_CASES = [
    # (id, request bytes, status, code or None when the gateway's DEFAULT_4XX template names it)
    ("negative-content-length", _request(b"POST /v1/compare HTTP/1.1", b"Content-Length: -5"), 400),
    ("underscore-content-length", _request(b"POST /v1/compare HTTP/1.1", b"Content-Length: 1_0"), 400),
    ("text-content-length", _request(b"POST /v1/compare HTTP/1.1", b"Content-Length: ten"), 400),
    (
        "two-content-lengths",
        _request(b"POST /v1/compare HTTP/1.1", b"Content-Length: 2", b"Content-Length: 3", body=b"{}"),
        400,
    ),
    ("body-shorter-than-length", _request(b"POST /v1/compare HTTP/1.1", b"Content-Length: 100", body=b"{}"), 400),
    (
        "chunked",
        _request(b"POST /v1/compare HTTP/1.1", b"Transfer-Encoding: chunked", body=b"2\r\n{}\r\n0\r\n\r\n"),
        411,
    ),
    ("huge-header", _request(b"GET /v1/vendors HTTP/1.1", b"X-Big: " + b"a" * 70_000), 431),
    ("too-many-headers", _request(b"GET /v1/vendors HTTP/1.1", *(b"X-%d: 1" % i for i in range(150))), 431),
    ("huge-uri", _request(b"GET /v1/results/" + b"a" * 70_000 + b" HTTP/1.1"), 414),
    ("garbage-request-line", b"\x00\xff\xfe garbage\r\n\r\n", 400),
    ("http-2-version", _request(b"GET /v1/vendors HTTP/2.0"), 400),
    ("bad-version", _request(b"GET /v1/vendors HTTP/x.y"), 400),
    ("non-ascii-path", _request("GET /v1/results/é\u200f HTTP/1.1".encode(), b"x-api-key: " + KEY.encode()), 404),
    ("unknown-method", _request(b"PROPFIND /v1/vendors HTTP/1.1", b"x-api-key: " + KEY.encode()), 405),
    ("non-latin1-api-key", _request(b"GET /v1/vendors HTTP/1.1", "x-api-key: ключ".encode()), 403),
]


@pytest.mark.parametrize(("request_bytes", "status"), [c[1:] for c in SOCKET_CASES], ids=[c[0] for c in SOCKET_CASES])
def test_what_only_a_socket_sends_is_a_contract_4xx(server, vendors, request_bytes, status):
    got, raw = send_raw(server, request_bytes)
    assert got == status, raw[:300]
    body = json.loads(raw)
    assert set(body) == {"request_id", "error"} and set(body["error"]) == ERROR_FIELDS
    assert sum(box.requests for box in vendors.values()) == 0


def test_the_server_is_healthy_after_the_corpus(server, vendors, face_bytes):
    """Runs last in this module: a good request still answers 200, and it reaches the
    default vendor's sandbox, so the counter above does count."""
    photo = base64.b64encode(face_bytes("obama.jpg")).decode()
    good = Nasty(
        "good", "POST", "/v1/compare", json.dumps({"image1": {"base64": photo}, "image2": {"base64": photo}}).encode()
    )
    status, raw = send(server, good)
    assert status == 200, raw[:500]
    assert json.loads(raw)["vendor"] == "face2"
    assert vendors["face2"].requests >= 1
    assert " raised:" not in server.stderr()  # no handler crashed on any of the above
    assert "Traceback" not in server.stderr()
