"""Running Lambda handlers in-process, for tests and tools: a thin face on the local
server's own handler loader, proxy-event builder and Lambda context, so tests call
the handlers exactly the way `make run` does."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from facegate_local.gateway import api_gateway_event
from facegate_local.lambda_context import LambdaContext
from facegate_local.runtime import load_handler as _load_handler
from facegate_local.template import FunctionSpec, Route, RouteMatch

ROOT = Path(__file__).resolve().parents[1]


@cache
def load_handler(code_uri: str, handler: str = "app.lambda_handler") -> Callable[[dict, Any], dict]:
    """The handler of the function whose code is in ``code_uri`` (e.g. ``functions/compare``)."""
    code_dir = (ROOT / code_uri).resolve()
    spec = FunctionSpec(
        logical_id=code_dir.name,
        name=f"facegate-{code_dir.name}",
        code_dir=code_dir,
        handler=handler,
        timeout_s=28,
        memory_mb=1024,
        environment={},
    )
    return _load_handler(spec)


def lambda_context(function_name: str, memory_mb: int = 1024, timeout_s: float = 28.0) -> LambdaContext:
    return LambdaContext(
        function_name=function_name,
        memory_limit_in_mb=str(memory_mb),
        invoked_function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}",
        timeout_s=timeout_s,
    )


def api_event(
    method: str,
    path: str,
    body: str | None = None,
    *,
    resource: str | None = None,
    path_parameters: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    stage: str = "local",
    api_key: str | None = None,
    api_key_id: str | None = None,
    source_ip: str = "127.0.0.1",
) -> dict:
    """The REST API (v1) proxy event for one request, as the local server builds it."""
    route = Route(method=method.upper(), path=resource or path, function="tests")
    event = api_gateway_event(
        match=RouteMatch(route, dict(path_parameters or {})),
        method=method.upper(),
        raw_path=path,
        query=urlencode(query or {}),
        headers=list((headers or {}).items()),
        body=(body or "").encode("utf-8"),
        stage=stage,
        request_id=str(uuid.uuid4()),
        source_ip=source_ip,
        api_key=api_key,
        account_id="000000000000",
    )
    if api_key_id is not None:
        event["requestContext"]["identity"]["apiKeyId"] = api_key_id
    return event


def invoke(
    handler: Callable[[dict, Any], dict], event: dict, function_name: str = "facegate-local"
) -> tuple[int, dict[str, str], Any]:
    """Run a handler; return (status, headers, parsed JSON body or raw text)."""
    response = handler(event, lambda_context(function_name))
    raw = response.get("body") or ""
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw
    return response["statusCode"], response.get("headers") or {}, body
