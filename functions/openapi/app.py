"""The API's OpenAPI 3 spec, served without an API key when the stage sets PublishOpenApi.

GET /openapi.json — the OpenAPI 3 spec of this API.

The spec is docs/openapi.json, generated from the code; `make openapi` writes the copy
beside this file that the function ships (tests/unit/local/test_openapi.py keeps the two
equal). It is not an operation of the API, so the spec does not list this route. No
Powertools resolver here: one static answer, read once per container.
"""

from functools import cache
from pathlib import Path

SPEC = Path(__file__).with_name("openapi.json")


@cache
def _spec() -> str:
    return SPEC.read_text(encoding="utf-8")


def lambda_handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "Cache-Control": "public, max-age=300"},
        "body": _spec(),
    }
