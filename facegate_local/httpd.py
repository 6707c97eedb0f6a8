"""The HTTP side of ``make run`` (see ``facegate_local.server``): a ThreadingHTTPServer
whose handler reads each request (Content-Length rules, the body limit, a silent
client's timeout), answers what http.server cannot read in the contract's shape,
hands the rest to the emulated gateway (``facegate_local.gateway.LocalApi``) and
writes one access log line per request."""

from __future__ import annotations

import sys
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TextIO

from facegate_local.gateway import HOST, LocalApi, Reply, builtin_error_body

BODY_TIMEOUT_S = 30.0  # how long the local server waits on a silent client


class LocalHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    api: LocalApi | None = None  # set before serve_forever(); bound earlier to fail fast on a taken port


def make_http_server(api: LocalApi | None, port: int, log: TextIO = sys.stderr) -> LocalHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server: LocalHTTPServer

        protocol_version = "HTTP/1.1"
        server_version = "facegate-local"
        timeout = BODY_TIMEOUT_S  # a client that stops sending mid-request does not hold a thread forever
        # The headers and the body go out in two writes: with Nagle's algorithm on, the
        # body waits for the client's delayed ACK of the headers (~40 ms on loopback).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # our own access log, without query strings, is written in _serve

        def __getattr__(self, name: str) -> Any:
            # Any method (TRACE, PROPFIND, FOO) goes to routing, which answers 405 or
            # 404 in the contract's shape; http.server would answer 501 with an HTML page.
            if name.startswith("do_"):
                return self._serve
            raise AttributeError(name)

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own refusals (a request line, URI or headers it cannot
            read: 400, 414, 431, 505) in the contract's shape, not its HTML page. Each
            is the client's mistake, so a 4xx; the phrase never quotes the request."""
            status = code if code < 500 else HTTPStatus.BAD_REQUEST
            text = f"{HTTPStatus(code).phrase}: the request cannot be read"
            api = self.server.api
            if api is not None:
                reply = api.gateway_error("DEFAULT_4XX", status, "INVALID_REQUEST", text, close=True)
            else:
                request_id = str(uuid.uuid4())
                body = builtin_error_body(request_id, "INVALID_REQUEST", text)
                headers = [("Content-Type", "application/json"), ("X-Request-Id", request_id)]
                reply = Reply(status, headers, body, close=True)
            print(f"{self.command or '-'} - {reply.status} (unreadable request)", file=log, flush=True)
            # An unreadable request line leaves http.server at HTTP/0.9, which has no
            # status line or headers: answer in HTTP/1.1 so the client sees the status.
            self.request_version = "HTTP/1.1"
            self._send(reply)

        def _serve(self) -> None:
            started = time.monotonic()
            reply = self._read_and_handle()
            # Logged before answering, so a client that has its answer finds the line there.
            ms = (time.monotonic() - started) * 1000
            path = self.path.split("?", 1)[0][:200]
            print(f"{self.command} {path} {reply.status} {ms:.0f}ms", file=log, flush=True)
            self._send(reply)

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            for k, v in reply.headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply.body)))
            if reply.close:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        def _read_and_handle(self) -> Reply:
            api = self.server.api
            assert api is not None, "serve only once the runtime is built"
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return api.gateway_error(
                    "DEFAULT_4XX", 411, "LENGTH_REQUIRED", "send a Content-Length header", close=True
                )
            lengths = {v.strip() for v in self.headers.get_all("Content-Length") or ()}
            # One plain decimal (int() would also take "+5", "1_0" and " -0").
            if len(lengths) > 1 or not all(v.isascii() and v.isdigit() for v in lengths):
                return api.gateway_error(
                    "DEFAULT_4XX", 400, "INVALID_REQUEST", "Content-Length is not valid", close=True
                )
            length = int(lengths.pop()) if lengths else 0
            if (reply := api.too_large(length)) is not None:
                return reply
            try:
                body = self.rfile.read(length) if length else b""
            except TimeoutError:
                body = b""
            if len(body) != length:  # the client stopped sending (or went quiet) before Content-Length
                return api.gateway_error(
                    "DEFAULT_4XX", 400, "INVALID_REQUEST", "the body is shorter than Content-Length", close=True
                )
            return api.handle(self.command, self.path, list(self.headers.items()), body, self.client_address[0])

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    server = LocalHTTPServer((HOST, port), Handler)
    server.api = api
    return server
