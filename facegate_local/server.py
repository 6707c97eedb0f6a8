"""``make run``: the facegate API on http://127.0.0.1:3000, with no AWS account.

Each HTTP request becomes an API Gateway REST proxy event and is handed, in this
process, to the same ``lambda_handler`` that Lambda runs. Routes, function
environments, timeouts and the DynamoDB table and secrets all come from
template.yaml, so the local API cannot drift from the deployed one. AWS is moto,
in-process; see ``facegate_local.aws``.

Environment (all optional):

- ``PORT``: the port on 127.0.0.1 (default 3000; 0 takes any free port, and the
  ready line names it).
- ``FACEGATE_API_KEY``: the key every route wants in ``x-api-key``
  (default ``local-dev-key``).
- ``FACEGATE_API_KEYS``: more keys, comma-separated, accepted beside it. Each key
  is its own tenant: its requests carry its own ``apiKeyId`` (``local_key_id``),
  as API Gateway gives each API key an id of its own.
- ``FACEGATE_CREDENTIALS``: a JSON file ``{"<vendor id>": {...secret fields...}}``
  whose entries become the vendors' emulated secrets.
- ``FACEGATE_SANDBOXES=1``: start the vendor sandboxes (``facegate_local.sandboxes``)
  on loopback and point every vendor that FACEGATE_CREDENTIALS leaves out at its
  sandbox; plain-http vendor endpoints are allowed in this mode.
- ``FACEGATE_STAGE``: the stage, hence the secret names
  ``facegate/<stage>/vendors/<id>`` (default: the template's Stage default).
- ``FACEGATE_TEMPLATE``: the SAM template to serve (default: template.yaml at the
  repository root).

Every other variable the template sets for the functions can be overridden from
the shell (``FACEGATE_DEFAULT_VENDOR=shuxun make run``): the shell beats the local
defaults below, which beat the template.

Errors the gateway answers itself (a missing or wrong ``x-api-key``: 403; an
unknown route; a body over API Gateway's 10 MB limit: 413; a function that fails:
502) are rendered from the template's ``GatewayResponses``, so they read as the
deployed API's do; without one, the contract's error shape (``FORBIDDEN``,
``NOT_FOUND``, ``IMAGE_TOO_LARGE``, ``INTERNAL_ERROR``). Their ``request_id`` is
the gateway's request id, as in AWS: no function ran, so nothing was logged.

Where this differs from API Gateway, on purpose:

* a known path with the wrong method answers 405 ``METHOD_NOT_ALLOWED`` with an
  ``Allow`` header (API Gateway answers it like an unknown route), and an unknown
  route is 404 unless the template sets another status (API Gateway: 403);
* a chunked request body (no Content-Length) answers 411; a Content-Length that
  is not one plain decimal, or a body shorter than it, 400;
* a request http.server cannot read (request line, URI over 64 KiB, headers over
  64 KiB or 100 of them, HTTP/2) answers its 4xx in the contract's shape, and any
  method reaches routing (405 or 404), never http.server's HTML 501;
* all functions share one process, so they share one environment (the union of
  their variables; a conflict is reported at startup) and invocations run one at a
  time: handlers and Powertools keep per-invocation state in module globals, as a
  Lambda container runs one request at a time;
* a function's ``Timeout`` is reported through the context but not enforced; a run
  past it is logged as a warning.

Output: exactly one line on stdout, once serving, containing
``http://127.0.0.1:<port>``. Everything else (sandboxes, warnings, one access log
line per request: method, path, status, milliseconds; never bodies or query
strings) goes to stderr.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from facegate_local import aws, pages
from facegate_local.lambda_context import LambdaContext
from facegate_local.template import (
    FunctionSpec,
    GatewayResponse,
    Resolver,
    Route,
    RouteMatch,
    Template,
    Unresolvable,
    WrongMethod,
    api_stage,
    functions,
    gateway_responses,
    match_route,
    resolve_environment,
    routes,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PORT = 3000
DEFAULT_API_KEY = "local-dev-key"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
BODY_TIMEOUT_S = 30.0  # how long the local server waits on a silent client
HOST = "127.0.0.1"
LAMBDA_LAYER_ROOT = "/opt/"

# Beat the template, lose to the shell: a laptop has no X-Ray daemon and no use for
# metrics on stdout, and `make run` answers with the built-in engine by default.
LOCAL_OVERRIDES = {
    "FACEGATE_DEFAULT_VENDOR": "local",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
# Only when neither the template nor the shell says.
LOCAL_FALLBACKS = {
    "POWERTOOLS_SERVICE_NAME": "facegate",
    "POWERTOOLS_METRICS_NAMESPACE": "Facegate",
}
# A long run of base64 in an exception message is most likely image data.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{64,}")


def local_key_id(api_key: str) -> str:
    """The key's ``apiKeyId``: distinct per key and stable across restarts; like API
    Gateway's, an id for the key, not the key (a short hash of a local dev key)."""
    return "local-" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


def api_keys(environ: Mapping[str, str]) -> tuple[str, ...]:
    """FACEGATE_API_KEY (or the default), then every key in FACEGATE_API_KEYS."""
    keys = [environ.get("FACEGATE_API_KEY") or DEFAULT_API_KEY]
    keys += [k.strip() for k in (environ.get("FACEGATE_API_KEYS") or "").split(",") if k.strip()]
    return tuple(dict.fromkeys(keys))


class StartupError(Exception):
    """Why the server cannot start, written for the person who ran ``make run``."""


# --- HTTP ↔ API Gateway events ----------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    close: bool = False  # the request body was not read: the connection cannot be reused


_VTL_REFERENCE = re.compile(r"\$!?\{?[A-Za-z][\w.]*\}?")
_VTL_DIRECTIVE = re.compile(r"#(?:set|if|elseif|else|end|foreach|macro|parse|include|define)\b")


def render_gateway_template(text: str, *, request_id: str, message: str, response_type: str) -> bytes | None:
    """A gateway response template with the ``$context`` variables API Gateway
    fills in for errors; None if it uses anything else (VTL directives, other
    variables) or does not come out as JSON: the built-in shape answers then."""
    if _VTL_DIRECTIVE.search(text):
        return None
    values = {
        "$context.requestId": request_id,
        "$context.extendedRequestId": request_id,
        "$context.error.messageString": json.dumps(message),
        "$context.error.message": json.dumps(message)[1:-1],
        "$context.error.responseType": response_type,
    }
    unknown = []

    def fill(m: re.Match[str]) -> str:
        reference = m.group(0)
        name = reference.rstrip(".")
        if name not in values:
            unknown.append(name)
            return reference
        return values[name] + reference[len(name) :]

    out = _VTL_REFERENCE.sub(fill, text)
    if unknown:
        return None
    try:
        json.loads(out)
    except ValueError:
        return None
    return out.encode()


def builtin_error_body(request_id: str, code: str, message: str) -> bytes:
    """The contract's error shape, for errors the template gives no response for."""
    error = {
        "code": code,
        "message": message,
        "retryable": False,
        "vendor": None,
        "vendor_code": None,
        "vendor_message": None,
    }
    return json.dumps({"request_id": request_id, "error": error}).encode()


def api_gateway_event(
    *,
    match: RouteMatch,
    method: str,
    raw_path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    stage: str,
    request_id: str,
    source_ip: str,
    api_key: str | None,
    account_id: str,
) -> dict[str, Any]:
    """The REST API (v1) Lambda proxy event API Gateway would send for this request.

    ``path`` keeps the client's percent-encoding, path and query parameters are
    decoded; ``headers``/``queryStringParameters`` hold the last value of a
    repeated name and the ``multiValue…`` forms hold all of them; absent ones are
    null, as are an empty body and ``stageVariables``. A body that is not UTF-8 is
    passed base64-encoded with ``isBase64Encoded`` set, as for a binary media type.
    """
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    pairs = parse_qsl(query, keep_blank_values=True)
    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in pairs:
        single_query[name] = value
        multi_query.setdefault(name, []).append(value)
    text: str | None
    encoded = False
    if not body:
        text = None
    else:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, encoded = base64.b64encode(body).decode("ascii"), True
    now = datetime.now(UTC)
    user_agent = next((v for k, v in reversed(headers) if k.lower() == "user-agent"), None)
    host = next((v for k, v in reversed(headers) if k.lower() == "host"), f"{HOST}")
    path_parameters = {k: unquote(v) for k, v in match.path_parameters.items()}
    return {
        "resource": match.route.path,
        "path": raw_path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": match.route.path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{stage}{raw_path}",
            "accountId": account_id,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": host.split(":")[0],
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
                "apiKey": api_key,
                "apiKeyId": local_key_id(api_key) if api_key is not None else None,
            },
            "domainName": host,
            "apiId": "local",
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def proxy_reply(result: Any, gateway_request_id: str) -> Reply | None:
    """The HTTP answer API Gateway makes of a proxy integration's result; None
    when the result is not a valid proxy response (API Gateway answers 502)."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return None
    multi = {k: [str(v) for v in vs] for k, vs in (result.get("multiValueHeaders") or {}).items()}
    # API Gateway merges the two; for a name in both, multiValueHeaders wins.
    lower = {k.lower() for k in multi}
    for k, v in (result.get("headers") or {}).items():
        if k.lower() not in lower:
            multi[k] = [str(v)]
    hop_by_hop = {"content-length", "transfer-encoding", "connection"}
    headers = [(k, v) for k, vs in multi.items() if k.lower() not in hop_by_hop for v in vs]
    headers.append(("x-amzn-RequestId", gateway_request_id))
    body = result.get("body") or ""
    try:
        raw = base64.b64decode(body, validate=True) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    except ValueError:
        return None
    return Reply(result["statusCode"], headers, raw)


# --- the local API ----------------------------------------------------------------------


@dataclass
class LoadedFunction:
    spec: FunctionSpec
    handler: Callable[[dict, Any], Any]


@dataclass
class LocalApi:
    """Routing, the API keys and the body limit, then one handler call per request."""

    routes: list[Route]
    functions: Mapping[str, LoadedFunction]
    api_keys: tuple[str, ...]
    stages: Mapping[str | None, str] = field(default_factory=dict)  # API logical id → stage name
    gateway_responses: Mapping[str, GatewayResponse] = field(default_factory=dict)
    region: str = "us-east-1"
    account_id: str = "123456789012"
    log: TextIO = field(default_factory=lambda: sys.stderr)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- errors the gateway answers itself ---

    def gateway_error(
        self,
        response_type: str,
        status: int,
        code: str,
        message: str,
        *,
        headers: list[tuple[str, str]] | None = None,
        close: bool = False,
    ) -> Reply:
        """Rendered from the template's gateway response of ``response_type`` (else
        its DEFAULT_4XX/DEFAULT_5XX), as the deployed API would answer; the
        contract's shape with ``code`` when the template has none. Like API
        Gateway's, ``request_id`` is the gateway's request id: no function ran,
        nothing was logged."""
        request_id = str(uuid.uuid4())
        fallback = "DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX"
        body = None
        configured = self.gateway_responses.get(response_type) or self.gateway_responses.get(fallback)
        if configured is not None and "application/json" in configured.templates:
            body = render_gateway_template(
                configured.templates["application/json"],
                request_id=request_id,
                message=message,
                response_type=response_type,
            )
            if body is not None and configured.status is not None:
                status = configured.status
        if body is None:
            body = builtin_error_body(request_id, code, message)
        reply_headers = [
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            *(headers or []),
        ]
        return Reply(status, reply_headers, body, close=close)

    def too_large(self, content_length: int) -> Reply | None:
        if content_length <= MAX_BODY_BYTES:
            return None
        return self.gateway_error(
            "REQUEST_TOO_LARGE",
            413,
            "IMAGE_TOO_LARGE",
            f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB, API Gateway's limit; "
            "send smaller images, or pass them by url or s3",
            close=True,  # the body stays unread, so the connection cannot carry another request
        )

    # --- requests ---

    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str = HOST
    ) -> Reply:
        parts = urlsplit(target)
        raw_path = parts.path or "/"
        if (early := self.too_large(len(body))) is not None:
            return early
        if (static := pages.page(method, raw_path)) is not None:
            return Reply(200, *static)
        found = match_route(self.routes, method, unquote(raw_path))
        if found is None:
            return self.gateway_error(
                "MISSING_AUTHENTICATION_TOKEN", 404, "NOT_FOUND", f"no route for {method} {raw_path[:200]}"
            )
        if isinstance(found, WrongMethod):
            # Not an API Gateway answer (it says 403 Missing Authentication Token, or
            # whatever the template maps that to): a 405 tells the developer more.
            allowed = ", ".join(found.allowed)
            return Reply(
                405,
                [("Content-Type", "application/json"), ("Allow", allowed)],
                builtin_error_body(
                    str(uuid.uuid4()),
                    "METHOD_NOT_ALLOWED",
                    f"{raw_path[:200]} accepts {allowed}, not {method}",
                ),
            )
        api_key = None
        if found.route.api_key_required:
            presented = next((v for k, v in headers if k.lower() == "x-api-key"), None)
            # Every key compared, in constant time each: which one matched leaks no timing.
            matched = (
                [hmac.compare_digest(presented.encode(), k.encode()) for k in self.api_keys]
                if presented is not None
                else []
            )
            if not any(matched):
                why = "missing" if presented is None else "not valid"
                return self.gateway_error("INVALID_API_KEY", 403, "FORBIDDEN", f"the x-api-key header is {why}")
            api_key = presented
        gateway_request_id = str(uuid.uuid4())
        event = api_gateway_event(
            match=found,
            method=method,
            raw_path=raw_path,
            query=parts.query,
            headers=headers,
            body=body,
            stage=self.stages.get(found.route.api, "local"),
            request_id=gateway_request_id,
            source_ip=source_ip,
            api_key=api_key,
            account_id=self.account_id,
        )
        return self.invoke(self.functions[found.route.function], event, gateway_request_id)

    def invoke(self, fn: LoadedFunction, event: dict[str, Any], gateway_request_id: str) -> Reply:
        spec = fn.spec
        context = LambdaContext(
            function_name=spec.name,
            memory_limit_in_mb=str(spec.memory_mb),
            invoked_function_arn=f"arn:aws:lambda:{self.region}:{self.account_id}:function:{spec.name}",
            timeout_s=spec.timeout_s,
        )
        with self._lock:
            started = time.monotonic()
            try:
                result = fn.handler(event, context)
            except Exception as e:
                self._log_crash(spec, e)
                result = None
            elapsed = time.monotonic() - started
        if elapsed > spec.timeout_s:
            print(
                f"warning: {spec.logical_id} ran {elapsed:.1f}s, past its Timeout of {spec.timeout_s}s: "
                "Lambda would have stopped it",
                file=self.log,
                flush=True,
            )
        reply = proxy_reply(result, gateway_request_id)
        if reply is None:
            return self.gateway_error(
                "INTEGRATION_FAILURE",
                502,
                "INTERNAL_ERROR",
                f"{spec.logical_id} failed or gave an invalid proxy response; the server log has details",
            )
        return reply

    def _log_crash(self, spec: FunctionSpec, e: BaseException) -> None:
        # Frames are code; messages may quote the input, so long base64 runs in them go.
        parts = traceback.format_exception(e)
        text = "".join(p if p.startswith('  File "') else _BASE64_RUN.sub("<redacted>", p) for p in parts)
        print(f"error: {spec.logical_id} raised:\n{text}", file=self.log, flush=True)


class LocalHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    api: LocalApi | None = None  # set before serve_forever(); bound earlier to fail fast on a taken port


def make_http_server(api: LocalApi | None, port: int, log: TextIO = sys.stderr) -> LocalHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server: LocalHTTPServer

        protocol_version = "HTTP/1.1"
        server_version = "facegate-local"
        timeout = BODY_TIMEOUT_S  # a client that stops sending mid-request does not hold a thread forever

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
                body = builtin_error_body(str(uuid.uuid4()), "INVALID_REQUEST", text)
                reply = Reply(status, [("Content-Type", "application/json")], body, close=True)
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


# --- startup --------------------------------------------------------------------------


def read_credentials(path: str) -> dict[str, dict[str, Any]]:
    """The FACEGATE_CREDENTIALS file. Errors name the file and the vendor, never a value."""
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StartupError(f"FACEGATE_CREDENTIALS names {p}, which does not exist") from None
    except (OSError, ValueError) as e:
        raise StartupError(f"FACEGATE_CREDENTIALS file {p} is not readable JSON ({type(e).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise StartupError(f'FACEGATE_CREDENTIALS file {p} must be {{"<vendor id>": {{...}}, ...}}')
    return data


def load_handler(spec: FunctionSpec) -> Callable[[dict, Any], Any]:
    """Import the function's handler file under a name unique to the function, the
    way a Lambda container imports it: once, before the first invocation."""
    path = spec.handler_file
    if not path.is_file():
        raise StartupError(f"{spec.logical_id}: handler file {path} does not exist")
    module_name = "facegate_fn_" + re.sub(r"\W", "_", spec.code_dir.name)
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise StartupError(f"{spec.logical_id}: cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running, like any import: pydantic and dataclasses look
    # their module up in sys.modules to resolve annotations.
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    handler = getattr(module, spec.handler_attribute, None)
    if not callable(handler):
        raise StartupError(f"{spec.logical_id}: {path} has no function {spec.handler_attribute}")
    return handler


def merged_environment(
    specs: Mapping[str, FunctionSpec], resolver: Resolver, wanted: set[str]
) -> tuple[dict[str, str], list[str]]:
    """The union of the functions' environments, and what to tell the developer
    about it: variables that cannot be resolved locally (dropped), paths into
    Lambda's layer mount that do not exist here (dropped: the layers' packages are
    in the venv), and variables two functions set differently (the first
    function's value is kept: they share a process)."""
    env: dict[str, str] = {}
    owner: dict[str, str] = {}
    notes = []
    layer_paths: dict[tuple[str, str], list[str]] = {}
    for logical in sorted(wanted):
        values, problems = resolve_environment(specs[logical], resolver)
        for name, why in problems.items():
            notes.append(f"warning: {logical}: environment variable {name} dropped: {why}")
        for name, value in values.items():
            if value.startswith(LAMBDA_LAYER_ROOT) and not Path(value).exists():
                layer_paths.setdefault((name, value), []).append(logical)
                continue
            if name in env and env[name] != value:
                notes.append(
                    f"warning: {name} differs between {owner[name]} and {logical}; functions share one "
                    f"process locally, so {owner[name]}'s value is used"
                )
                continue
            env.setdefault(name, value)
            owner.setdefault(name, logical)
    for (name, value), users in layer_paths.items():
        notes.append(
            f"note: {name}={value} ({', '.join(users)}) not set: {LAMBDA_LAYER_ROOT} is Lambda's layer "
            "mount; locally the layers' packages come from the venv"
        )
    return env, notes


@dataclass
class Runtime:
    api: LocalApi
    mock: Any
    sandboxes: dict[str, Any]
    stage: str

    def close(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.stop()
        self.mock.stop()


def start_sandboxes(skip: set[str], log: TextIO) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Every vendor sandbox not covered by real credentials, on loopback, with the
    credentials it accepts plus its endpoint. Called on the instance, so a sandbox
    that makes its keys per instance (zoloz's RSA pairs) hands out its own."""
    from facegate_local.sandboxes import SANDBOXES, sandbox_class

    started = {}
    for vendor in SANDBOXES:
        if vendor in skip:
            print(f"sandbox {vendor}: not started, FACEGATE_CREDENTIALS configures {vendor}", file=log)
            continue
        try:
            sandbox = sandbox_class(vendor)().start()
        except (ImportError, AttributeError) as e:
            print(f"warning: sandbox {vendor} unavailable ({type(e).__name__}: {e})", file=log)
            continue
        credentials = {**sandbox.default_credentials(), "endpoint": sandbox.url}
        host_port = sandbox.url.split("://", 1)[1]
        # No scheme on purpose: the only line with http://127.0.0.1:<port> is the ready line.
        print(f"sandbox {vendor} listening on {host_port}", file=log)
        started[vendor] = (sandbox, credentials)
    log.flush()
    return started


def build_runtime(
    environ: MutableMapping[str, str] = os.environ,
    *,
    template_path: str | Path | None = None,
    log: TextIO = sys.stderr,
) -> Runtime:
    """Everything before serving: AWS isolated and emulated, resources created from
    the template, the functions' environment applied, every handler imported."""
    original = dict(environ)
    region = aws.isolate_environment(environ)
    # Powertools warns on every invocation that flushes no metrics; with metrics
    # disabled locally that is every invocation, and the access log drowns in it.
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
    path = Path(template_path or environ.get("FACEGATE_TEMPLATE") or ROOT / "template.yaml")
    if not path.is_file():
        raise StartupError(f"no SAM template at {path}")
    try:
        template = Template.load(path)
        stage = original.get("FACEGATE_STAGE") or template.parameter_default("Stage") or "dev"
        resolver = Resolver(template, parameters={"Stage": stage}, region=region)
        specs = functions(template, resolver)
        api_routes = routes(template, resolver)
    except (yaml.YAMLError, ValueError, KeyError, Unresolvable) as e:
        raise StartupError(f"{path} cannot be served locally: {type(e).__name__}: {e}") from None
    if not api_routes:
        raise StartupError(f"{path} declares no function with an Api event: nothing to serve")

    credentials = read_credentials(original["FACEGATE_CREDENTIALS"]) if original.get("FACEGATE_CREDENTIALS") else {}
    mock = aws.start()
    sandboxes: dict[str, Any] = {}
    try:
        if original.get("FACEGATE_SANDBOXES", "").lower() in ("1", "true", "yes"):
            for vendor, (sandbox, creds) in start_sandboxes(set(credentials), log).items():
                sandboxes[vendor] = sandbox
                credentials.setdefault(vendor, creds)
            environ["FACEGATE_ALLOW_HTTP_URLS"] = "true"  # sandboxes speak plain http on loopback
        # The secret names the functions compute from FACEGATE_STAGE (the contract's).
        secret_values = {f"facegate/{stage}/vendors/{v}": json.dumps(c) for v, c in credentials.items()}
        try:
            created = aws.create_resources(template, resolver, region=region, secret_values=secret_values)
        except Unresolvable as e:
            raise StartupError(str(e)) from None
        made = {c.attributes.get("Name") for c in created if c.type == "AWS::SecretsManager::Secret"}
        for name in sorted(set(secret_values) - made):
            print(f"warning: credentials for {name} not loaded: the template defines no such secret", file=log)

        wanted = {r.function for r in api_routes}
        env, notes = merged_environment(specs, resolver, wanted)
        for note in notes:
            print(note, file=log)
        for name, value in {**env, **LOCAL_OVERRIDES, "FACEGATE_STAGE": stage}.items():
            if name not in original:
                environ[name] = value
        for name, value in LOCAL_FALLBACKS.items():
            environ.setdefault(name, value)
        log.flush()

        loaded = {logical: LoadedFunction(specs[logical], load_handler(specs[logical])) for logical in sorted(wanted)}
        stages = {r.api: api_stage(template, resolver, r.api) for r in api_routes}
        # One set of gateway responses: the API the routes belong to (there is one).
        responses = gateway_responses(template, resolver, next((r.api for r in api_routes if r.api), None))
        api = LocalApi(
            routes=api_routes,
            functions=loaded,
            api_keys=api_keys(original),
            stages=stages,
            gateway_responses=responses,
            region=region,
            account_id=resolver.account_id,
            log=log,
        )
    except BaseException:
        for sandbox in sandboxes.values():
            sandbox.stop()
        mock.stop()
        raise
    return Runtime(api, mock, sandboxes, stage)


def _port(environ: Mapping[str, str]) -> int:
    raw = environ.get("PORT") or str(DEFAULT_PORT)
    try:
        port = int(raw)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise StartupError(f"PORT must be a port number, got {raw!r}") from None
    return port


def main(environ: MutableMapping[str, str] = os.environ) -> int:
    try:
        port = _port(environ)
        # Bound first: a taken port fails in a moment, not after every handler is imported.
        try:
            httpd = make_http_server(None, port)
        except OSError as e:
            raise StartupError(f"cannot listen on {HOST}:{port} ({e.strerror}); set PORT") from None
        try:
            runtime = build_runtime(environ)
        except BaseException:
            httpd.server_close()
            raise
    except StartupError as e:
        print(f"facegate: error: {e}", file=sys.stderr, flush=True)
        return 1
    httpd.api = runtime.api
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever() to return, and serve_forever() runs in
        # this (the main) thread: ask from another one.
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    key = "local-dev-key" if runtime.api.api_keys[0] == DEFAULT_API_KEY else "from FACEGATE_API_KEY"
    if len(runtime.api.api_keys) > 1:
        key += f" and {len(runtime.api.api_keys) - 1} more from FACEGATE_API_KEYS"
    print(f"facegate is serving on http://{HOST}:{httpd.server_address[1]} (x-api-key: {key})", flush=True)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        runtime.close()
    print("facegate stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
