"""URL images through the API: a loopback image server is reached only when allowlisted (local
development), and every refusal is the same 422 IMAGE_UNAVAILABLE."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from facegate.fetch import FETCH_FAILED


@pytest.fixture
def photo_server(face_bytes):
    """Serves /<name> from the test photos over http://127.0.0.1, counting requests."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            body = face_bytes(self.path.lstrip("/"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    server.hits = hits  # type: ignore[attr-defined]
    server.base = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


def _compare(call_api, server):
    body = {"image1": {"url": f"{server.base}/obama.jpg"}, "image2": {"url": f"{server.base}/obama2.jpg"}}
    return call_api("compare", "POST", "/v1/compare", body)


def test_loopback_image_urls_are_refused_without_the_allowlist(aws, call_api, photo_server, monkeypatch):
    monkeypatch.setenv("FACEGATE_ALLOW_HTTP_URLS", "true")
    status, got = _compare(call_api, photo_server)
    assert (status, got["error"]["code"], got["error"]["message"]) == (422, "IMAGE_UNAVAILABLE", FETCH_FAILED)
    assert photo_server.hits == []


def test_allowlisted_loopback_image_urls_are_fetched(aws, call_api, photo_server, monkeypatch):
    monkeypatch.setenv("FACEGATE_ALLOW_HTTP_URLS", "true")
    monkeypatch.setenv("FACEGATE_URL_ALLOWLIST", "127.0.0.1/32")
    status, got = _compare(call_api, photo_server)
    assert status == 200, got
    assert got["decision"] == "match"
    assert sorted(photo_server.hits) == ["/obama.jpg", "/obama2.jpg"]  # each fetched once
