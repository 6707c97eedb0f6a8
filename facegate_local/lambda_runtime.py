"""Running Lambda handlers in-process: load a function's handler by path, build API
Gateway REST proxy events, fake the Lambda context. Used by the local server and
by the tests, so both exercise the handlers exactly the same way."""

from __future__ import annotations

import copy
import importlib.util
import json
import time
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@cache
def load_handler(code_uri: str, handler: str = "app.lambda_handler") -> Callable[[dict, Any], dict]:
    """Import ``<code_uri>/<module>.py`` under a unique module name; return the handler."""
    module_name, _, func = handler.rpartition(".")
    path = (ROOT / code_uri / f"{module_name}.py").resolve()
    unique = "facegate_fn_" + "_".join(path.relative_to(ROOT).with_suffix("").parts[-2:])
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load handler from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, func)


def lambda_context(function_name: str, memory_mb: int = 1024, timeout_s: float = 28.0) -> SimpleNamespace:
    deadline = time.monotonic() + timeout_s
    return SimpleNamespace(
        function_name=function_name,
        function_version="$LATEST",
        memory_limit_in_mb=memory_mb,
        invoked_function_arn=f"arn:aws:lambda:us-east-1:000000000000:function:{function_name}",
        aws_request_id=str(uuid.uuid4()),
        log_group_name=f"/aws/lambda/{function_name}",
        log_stream_name="local",
        get_remaining_time_in_millis=lambda: max(0, int((deadline - time.monotonic()) * 1000)),
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
    """An API Gateway REST (v1) proxy event, shaped like `sam local generate-event
    apigateway aws-proxy`."""
    headers = dict(headers or {})
    now = time.time()
    return copy.deepcopy(
        {
            "resource": resource or path,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
            "pathParameters": path_parameters,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": resource or path,
                "httpMethod": method,
                "path": f"/{stage}{path}",
                "stage": stage,
                "protocol": "HTTP/1.1",
                "requestId": str(uuid.uuid4()),
                "requestTimeEpoch": int(now * 1000),
                "accountId": "000000000000",
                "apiId": "local",
                "identity": {
                    "sourceIp": source_ip,
                    "apiKey": api_key,
                    "apiKeyId": api_key_id,
                    "userAgent": headers.get("User-Agent"),
                },
            },
            "body": body,
            "isBase64Encoded": False,
        }
    )


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
