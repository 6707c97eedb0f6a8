"""The OpenAPI 3 spec of the whole API, generated from the code.

Each function's Powertools resolver already knows its routes and validates with the
pydantic models, so each gives its part of the spec (``get_openapi_schema``); they are
merged here, and what a resolver cannot know is added from the code that does: the API
key scheme (template.yaml), every error code with its status (``facegate.errors``), and
request examples.

    .venv/bin/python -m facegate_local.openapi > docs/openapi.json     # `make openapi`

`make openapi` also copies it to functions/openapi/openapi.json, which GET /openapi.json
serves in AWS (PublishOpenApi). tests/unit/local/test_openapi.py fails when either copy
differs from what this generates, so the committed spec never drifts from the code.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
TITLE = "facegate"
VERSION = "1.0.0"
DESCRIPTION = (
    "One API for face verification in front of several vendors and a built-in engine. "
    "Send images once, in one shape; get one normalised answer, logged, with failover. "
    "Every route needs an API key in `x-api-key`. Every error has the same shape "
    "(`ErrorResponse`); its `code` says what happened, its HTTP status how to react."
)
# Template routes that are not operations of the API: the spec itself (functions/openapi).
UNDOCUMENTED_ROUTES = {("get", "/openapi.json")}
SECURITY_SCHEME = {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}

# What a caller can get from every route besides its own answers (API Gateway answers 403
# for a missing or wrong key and 429 when throttled before any function runs).
COMMON_STATUSES = (403, 429, 500, 504)
# Statuses a route's body can cause: only where there is a body to validate.
BODY_STATUSES = (400, 409, 413, 415, 422, 501, 502, 503)
# "A 204 response is terminated by the end of the header section; it cannot contain content"
# (RFC 9110, 15.3.5); nor can a 304 (15.4.5).
NO_BODY_STATUSES = frozenset({"204", "304"})

# A real image, so an example sent as it is (Swagger UI's "Try it out", Schemathesis' examples
# phase) reaches the engine: a 32x32 grey JPEG, the smallest side a face may have. It has no
# face, so detect answers 200 with no faces and the others 422 NO_FACE.
_EXAMPLE_JPEG_BASE64 = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBk"
    "eFxlZ2P/wAALCAAgACABAREA/8QAFAABAAAAAAAAAAAAAAAAAAAAAP/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AAAAAAP/Z"
)
_EXAMPLE_IMAGE = {"base64": _EXAMPLE_JPEG_BASE64}
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/compare", "post"): {
        "image1": _EXAMPLE_IMAGE,
        "image2": {"url": "https://example.com/photos/b.jpg"},
        "vendor": "zoloz",
        "fallback": ["shuxun", "local"],
        "security_level": "normal",
    },
    ("/v1/detect", "post"): {"image": _EXAMPLE_IMAGE, "max_faces": 5},
    ("/v1/features", "post"): {"image": {"s3": {"key": "inputs/a.jpg"}}},
    ("/v1/verify-identity", "post"): {
        "name": "张三",
        "id_number": "11010519491231002X",
        "image": _EXAMPLE_IMAGE,
        "vendor": "jumei",
    },
}


# "POST /v1/compare — are two faces the same person." in a function's docstring.
_ROUTE_LINE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S+) — (.+?)\.?$", re.MULTILINE)


def _function_apps() -> list[tuple[Any, str]]:
    """Every function's resolver and module docstring (functions without HTTP routes have none)."""
    apps = []
    for app_py in sorted(FUNCTIONS.glob("*/app.py")):
        name = f"facegate_openapi_{app_py.parent.name}"
        spec = importlib.util.spec_from_file_location(name, app_py)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        app = getattr(module, "app", None)
        if app is not None and hasattr(app, "get_openapi_schema"):
            apps.append((app, module.__doc__ or ""))
    return apps


def error_codes() -> dict[int, list[str]]:
    """Every error code facegate answers with, by HTTP status, from the one error tree."""
    from facegate import errors

    by_status: dict[int, set[str]] = defaultdict(set)
    pending = [errors.FacegateError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        by_status[cls.status].add(cls.code)
    # Answered by API Gateway itself (template.yaml's gateway responses).
    by_status[403].add("FORBIDDEN")
    by_status[429].update({"RATE_LIMITED", "QUOTA_EXCEEDED"})
    by_status[504].add("GATEWAY_TIMEOUT")
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


def _error_response(status: int, codes: list[str]) -> dict[str, Any]:
    return {
        "description": "Error: " + ", ".join(f"`{c}`" for c in codes),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }


def generate() -> dict[str, Any]:
    from facegate.models import ErrorResponse

    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for app, doc in _function_apps():
        part = app.get_openapi_schema(title=TITLE, version=VERSION).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        summaries = {(m.lower(), p): text for m, p, text in _ROUTE_LINE.findall(doc)}
        for path, item in part.get("paths", {}).items():
            for method, operation in item.items():
                if (method, path) in UNDOCUMENTED_ROUTES:
                    continue
                if method in paths.get(path, {}):
                    raise ValueError(f"two functions define {method.upper()} {path}")
                if (method, path) in summaries:
                    operation["summary"] = summaries[(method, path)]
                paths.setdefault(path, {})[method] = operation
        for name, schema in part.get("components", {}).get("schemas", {}).items():
            if name in ("HTTPValidationError", "ValidationError"):
                continue  # Powertools' own 422 shape: ours is ErrorResponse
            if schemas.setdefault(name, schema) != schema:
                raise ValueError(f"two functions disagree on the schema {name}")

    codes = error_codes()
    errors_schema = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in errors_schema.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas["ErrorResponse"] = errors_schema
    schemas["ErrorBody"]["properties"]["code"]["description"] = "Stable upper-case code; by HTTP status: " + "; ".join(
        f"{status}: {', '.join(c)}" for status, c in codes.items()
    )
    for path, item in paths.items():
        for method, operation in item.items():
            operation["security"] = [{"ApiKey": []}]
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)  # Powertools' validation shape; ours follows
            for status in NO_BODY_STATUSES & responses.keys():
                # Powertools gives every response the handler's return type as JSON (`null`
                # here); these statuses have no body at all, so no Content-Type either.
                responses[status].pop("content", None)
            statuses = COMMON_STATUSES + (BODY_STATUSES if "requestBody" in operation else (400, 404))
            for status in sorted(statuses):
                if status in codes:
                    responses[str(status)] = _error_response(status, codes[status])
            example = EXAMPLES.get((path, method))
            if example is not None:
                operation["requestBody"]["content"]["application/json"]["example"] = example
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": SECURITY_SCHEME},
        "security": [{"ApiKey": []}],
    }


def render(spec: dict[str, Any]) -> str:
    return json.dumps(spec, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main() -> None:
    import os

    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")  # importing the handlers must not trace
    sys.stdout.write(render(generate()))


if __name__ == "__main__":
    main()
