"""The common machinery of every vendor sandbox.

A sandbox is a real HTTP server on loopback that plays one vendor: it checks each
request the way that vendor's documentation says its server does (signature,
timestamp window, content type, fields) and answers with the documented bodies.
It never imports facegate's signers or parsers: its checks are written from the
vendor's doc on their own, so agreeing with it means agreeing with the doc.

Faults can be switched on for the next N requests (or all) to test failover:
``timeout``, ``http_500``, ``malformed``, ``rate_limit``, ``quota``, ``auth``,
``bad_signature`` (a response signature that does not verify), ``reset``
(connection dropped without an answer). Every request that the vendor would bill
is counted in ``billed``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

FAULTS = ("timeout", "http_500", "malformed", "rate_limit", "quota", "auth", "bad_signature", "reset")


# A request's headers: the server's are an email.message.Message (case-insensitive). A lazy
# alias: Message is generic to type checkers only.
type Headers = Mapping[str, str] | Message[str, str]


@dataclass
class SandboxRequest:
    method: str
    path: str  # without the query string
    query: str
    headers: Headers
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        from urllib.parse import parse_qs

        parsed = parse_qs(self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        return {k: v[-1] for k, v in parsed.items()}


@dataclass
class SandboxResponse:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    billed: bool = False

    @classmethod
    def json(cls, obj: Any, status: int = 200, *, billed: bool = False, headers: dict | None = None):
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        h = {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
        return cls(status=status, body=body, headers=h, billed=billed)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (our timeout tests) leaves a closed socket behind:
        # expected, not worth a traceback. Anything else is still reported.
        import sys

        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
            return
        super().handle_error(request, client_address)


class Sandbox:
    """Subclasses implement ``handle`` (and, if the vendor signs responses,
    ``sign_response``) and say how each fault looks for their vendor."""

    vendor: ClassVar[str]

    def __init__(self, *, latency_s: float = 0.0, timeout_s: float = 30.0, qps: float | None = None):
        self.latency_s = latency_s
        self.timeout_s = timeout_s  # how long a "timeout" fault stalls
        self.qps = qps  # a rate cap, answered with the vendor's rate-limit body
        self.billed = 0
        self.requests = 0
        self.rejected: list[str] = []  # why each refused request was refused
        self.log: list[SandboxRequest] = []
        self._faults: list[str] = []
        self._sticky_fault: str | None = None
        self._lock = threading.Lock()
        self._window: list[float] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what a vendor sandbox provides ---------------------------------------------

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        raise NotImplementedError

    def fault_response(self, fault: str, req: SandboxRequest) -> SandboxResponse:
        """The vendor's own body for ``rate_limit``, ``quota`` and ``auth``."""
        raise NotImplementedError

    def sign_response(self, response: SandboxResponse, req: SandboxRequest, *, tamper: bool) -> SandboxResponse:
        """Vendors that sign responses override this; ``tamper`` breaks the signature."""
        return response

    # --- control ---------------------------------------------------------------------

    def fail_next(self, fault: str, times: int = 1) -> None:
        assert fault in FAULTS, fault
        with self._lock:
            self._faults.extend([fault] * times)

    def fail_always(self, fault: str | None) -> None:
        assert fault is None or fault in FAULTS, fault
        self._sticky_fault = fault

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._sticky_fault = None
            self.billed = self.requests = 0
            self.rejected.clear()
            self.log.clear()

    def reject(self, why: str) -> str:
        """Record why a request was refused (tests assert on it) and return ``why``."""
        self.rejected.append(why)
        return why

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the sandbox first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, port: int = 0) -> Sandbox:
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without this, Nagle's algorithm and
            # delayed ACKs add ~40 ms to every sandbox answer.
            disable_nagle_algorithm = True

            def log_message(self, *args):  # quiet
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                req = SandboxRequest(self.command, path, query, self.headers, body)
                resp = sandbox._dispatch(req)
                if resp is None:  # "reset": drop the connection without answering
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(resp.status)
                for k, v in resp.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                self.wfile.write(resp.body)

            do_POST = do_GET = do_PUT = _serve

        self._server = _QuietServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"sandbox-{self.vendor}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- internals -------------------------------------------------------------------

    def _next_fault(self) -> str | None:
        with self._lock:
            if self._faults:
                return self._faults.pop(0)
        return self._sticky_fault

    def _over_qps(self) -> bool:
        if self.qps is None:
            return False
        now = time.monotonic()
        with self._lock:
            self._window = [t for t in self._window if now - t < 1.0]
            if len(self._window) >= self.qps:
                return True
            self._window.append(now)
        return False

    def _dispatch(self, req: SandboxRequest) -> SandboxResponse | None:
        with self._lock:
            self.requests += 1
            self.log.append(req)
        if self.latency_s:
            time.sleep(self.latency_s)
        fault = self._next_fault()
        if fault == "reset":
            return None
        if fault == "timeout":
            time.sleep(self.timeout_s)
            return SandboxResponse(status=504, body=b"")
        if fault == "http_500":
            return SandboxResponse(
                status=500,
                body=b"<html><body>Internal Server Error</body></html>",
                headers={"Content-Type": "text/html"},
            )
        if fault == "malformed":
            return SandboxResponse(
                status=200, body=b'{"code": 0, "data": {"trunc', headers={"Content-Type": "application/json"}
            )
        if fault in ("rate_limit", "quota", "auth") or (fault is None and self._over_qps()):
            resp = self.fault_response(fault or "rate_limit", req)
        else:
            try:
                resp = self.handle(req)
            except Exception as e:  # a sandbox bug must show up as a failed test, not a hang
                resp = SandboxResponse(status=599, body=f"sandbox error: {type(e).__name__}: {e}".encode())
        if resp.billed:
            with self._lock:
                self.billed += 1
        return self.sign_response(resp, req, tamper=fault == "bad_signature")
