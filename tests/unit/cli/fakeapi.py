"""A scripted fake of the facegate API over real loopback HTTP: each route answers a
queue of canned replies (the last one repeats), and every request is recorded."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def error_reply(status: int, code: str, *, retryable: bool = False, request_id: str = "01REQ", **headers) -> Reply:
    body = {
        "request_id": request_id,
        "error": {
            "code": code,
            "message": f"{code.lower().replace('_', ' ')}",
            "retryable": retryable,
            "vendor": None,
            "vendor_code": None,
            "vendor_message": None,
        },
    }
    return Reply(status, json.dumps(body), {"X-Request-Id": request_id, **headers})


def ok_reply(data: dict, status: int = 200, **headers) -> Reply:
    return Reply(status, json.dumps(data), {"X-Request-Id": data.get("request_id", "01OK"), **headers})


class FakeApi:
    def __init__(self, port: int = 0) -> None:
        self.seen: list[Seen] = []
        self.routes: dict[tuple[str, str], list[Reply]] = {}
        self.prefixes: list[tuple[str, str, Callable[[Seen], Reply]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                api.seen.append(Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers), body))
                replies = api.routes.get((self.command, parts.path))
                dynamic = [f for m, p, f in api.prefixes if m == self.command and parts.path.startswith(p)]
                if dynamic:
                    reply = dynamic[0](api.seen[-1])
                elif replies:
                    reply = replies.pop(0) if len(replies) > 1 else replies[0]
                else:
                    reply = error_reply(404, "NOT_FOUND")
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                data = reply.body.encode()
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    if data and "Content-Type" not in reply.headers:
                        self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on this one (a read timeout test)

            do_GET = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.routes[(method, path)] = list(replies)

    def on_prefix(self, method: str, prefix: str, answer: Callable[[Seen], Reply]) -> None:
        """Every path under ``prefix`` answered by ``answer(request)``."""
        self.prefixes.append((method, prefix, answer))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMPARE_ANSWER = {
    "request_id": "01KAM6Z9C3V0W3Q3R8X2J5N1TB",
    "operation": "compare",
    "vendor": "local",
    "latency_ms": 640,
    "billed": False,
    "attempts": [{"vendor": "local", "outcome": "ok", "billed": False, "latency_ms": 630}],
    "decision": "match",
    "match": True,
    "similarity": 0.7119,
    "threshold": 0.5,
    "security_level": "normal",
    "vendor_score": 0.3457,
}
