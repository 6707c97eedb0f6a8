"""API Gateway, emulated for ``make run`` (see ``facegate_local.server``): the routes,
the API keys, the errors the gateway answers itself (rendered from the template's
``GatewayResponses``), the REST proxy event made of a request, and the HTTP reply
made of a function's proxy result."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

from facegate_local import pages
from facegate_local.lambda_context import LambdaContext
from facegate_local.template import FunctionSpec, GatewayResponse, Route, RouteMatch, WrongMethod, match_route

DEFAULT_API_KEY = "local-dev-key"
MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
HOST = "127.0.0.1"

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


def render_gateway_header(expression: str, *, request_id: str, response_type: str) -> str | None:
    """A gateway response header's value from its mapping expression: a quoted
    literal, or one of the ``context`` variables API Gateway has for its own errors;
    None for anything else (request parameters, stage variables): the header is
    left out then."""
    if len(expression) >= 2 and expression[0] == expression[-1] == "'":
        return expression[1:-1]
    return {
        "context.requestId": request_id,
        "context.extendedRequestId": request_id,
        "context.error.responseType": response_type,
    }.get(expression)


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


def with_request_id(headers: list[tuple[str, str]], request_id: str) -> list[tuple[str, str]]:
    """``headers`` with the contract's ``X-Request-Id`` (every response carries one)
    unless they have it already."""
    if any(k.lower() == "x-request-id" for k, _ in headers):
        return headers
    return [*headers, ("X-Request-Id", request_id)]


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
        reply_headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)]
        configured = self.gateway_responses.get(response_type) or self.gateway_responses.get(fallback)
        if configured is not None:
            for name, expression in configured.headers.items():
                value = render_gateway_header(expression, request_id=request_id, response_type=response_type)
                if value is not None:
                    reply_headers.append((name, value))
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
            reply_headers = with_request_id(reply_headers, request_id)  # the contract's shape, the contract's header
        return Reply(status, [*reply_headers, *(headers or [])], body, close=close)

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
            request_id = str(uuid.uuid4())
            return Reply(
                405,
                [
                    ("Content-Type", "application/json"),
                    ("x-amzn-RequestId", request_id),
                    ("X-Request-Id", request_id),
                    ("Allow", allowed),
                ],
                builtin_error_body(
                    request_id,
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
