"""The OpenAPI spec: generated from the code, committed as docs/openapi.json, and complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facegate.models import ErrorBody
from facegate_local import openapi
from facegate_local.template import Resolver, Template, routes

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "docs" / "openapi.json"
SHIPPED = ROOT / "functions" / "openapi" / "openapi.json"  # what GET /openapi.json serves in AWS


@pytest.fixture(scope="module")
def spec() -> dict:
    return openapi.generate()


def test_the_committed_spec_is_what_the_code_generates(spec):
    assert COMMITTED.read_text(encoding="utf-8") == openapi.render(spec), (
        "docs/openapi.json is out of date: run `make openapi` and commit it"
    )


def test_the_spec_function_ships_exactly_the_committed_spec():
    assert SHIPPED.read_bytes() == COMMITTED.read_bytes(), "run `make openapi` and commit both copies"


def test_every_route_of_the_template_is_in_the_spec_and_nothing_else(spec):
    template = Template.load(ROOT / "template.yaml")
    declared = {(r.method.lower(), r.path) for r in routes(template, Resolver(template))}
    documented = {(m, p) for p, item in spec["paths"].items() for m in item}
    # The spec's own route is in the template (PublishOpenApi) but is no operation of the API.
    assert declared >= openapi.UNDOCUMENTED_ROUTES
    assert documented == declared - openapi.UNDOCUMENTED_ROUTES


def test_every_operation_needs_the_api_key_and_documents_its_errors(spec):
    assert spec["components"]["securitySchemes"]["ApiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    for path, item in spec["paths"].items():
        for method, op in item.items():
            assert op["security"] == [{"ApiKey": []}], (method, path)
            assert op["summary"] and not op["summary"].startswith(method.upper()), (method, path)
            for status in ("403", "429", "500"):
                assert op["responses"][status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorResponse"
                }
            if "requestBody" in op:
                assert {"400", "413", "422", "502", "503"} <= set(op["responses"]), (method, path)


def test_every_error_code_is_documented_with_its_status(spec):
    codes = openapi.error_codes()
    described = spec["components"]["schemas"]["ErrorBody"]["properties"]["code"]["description"]
    for status, names in codes.items():
        assert f"{status}: {', '.join(names)}" in described
    assert "NO_FACE" in codes[422] and "VENDOR_TIMEOUT" in codes[504] and "FORBIDDEN" in codes[403]
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) >= {"code", "message", "retryable"}
    assert set(ErrorBody.model_fields) == set(spec["components"]["schemas"]["ErrorBody"]["properties"])


def test_a_response_without_a_body_declares_no_content(spec):
    """DELETE /v1/results answers 204 with no body and no Content-Type: a spec that gives
    it JSON content makes clients (and Schemathesis) expect a body that never comes."""
    erased = spec["paths"]["/v1/results/{request_id}"]["delete"]["responses"]["204"]
    assert "content" not in erased and erased["description"]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            for status in openapi.NO_BODY_STATUSES & op["responses"].keys():
                assert "content" not in op["responses"][status], (method, path, status)


@pytest.mark.parametrize(
    "body",
    [
        {"image": {"base64": "AAAA"}},
        {"image": {"url": "HTTPS://example.com/a.jpg"}},
        {"image": {"s3": {"key": "a.jpg"}, "url": None}},
        {"image": {}},
        {"image": {"base64": "AAAA", "url": "https://example.com/a.jpg"}},
        {"image": {"url": "ftp://example.com/a.jpg"}},
        {"image": {"base64": None}},
        {"image": {"base64": "AAAA"}, "fallback": ["local", "local"]},
        {"image1": {"base64": "AAAA"}, "image2": {"base64": "AAAA"}, "consensus": {"vendors": ["local", "local"]}},
        {"image1": {"base64": "AAAA"}, "image2": {"base64": "AAAA"}, "consensus": {"vendors": ["local", "zoloz"]}},
    ],
)
def test_the_spec_refuses_what_the_model_refuses(spec, body):
    """Where the models check more than their types (one image kind, an http(s) URL, each
    vendor once), the spec says so too: a generator reading it (Schemathesis) then sends
    requests the API takes, and a client validating against it learns the rules."""
    import jsonschema
    import pydantic

    from facegate.models import CompareRequest, DetectRequest

    path, model = ("/v1/compare", CompareRequest) if "image1" in body else ("/v1/detect", DetectRequest)
    schema = {**spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]}
    schema["components"] = spec["components"]
    spec_accepts = jsonschema.Draft202012Validator(schema).is_valid(body)
    try:
        model.model_validate(body)
        model_accepts = True
    except pydantic.ValidationError:
        model_accepts = False
    assert spec_accepts == model_accepts


def test_request_examples_are_valid_requests(spec):
    from facegate import models

    bodies = {
        "/v1/compare": models.CompareRequest,
        "/v1/detect": models.DetectRequest,
        "/v1/features": models.FeaturesRequest,
        "/v1/verify-identity": models.VerifyIdentityRequest,
    }
    for path, model in bodies.items():
        example = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]
        model.model_validate(example)


def test_the_example_images_are_images_the_api_reads(spec):
    """Sent as they are, the examples reach the engine (a placeholder would stop at the
    base64 check): the inline images decode to an image with the smallest side a face may have."""
    from facegate import images

    inline = []
    for item in spec["paths"].values():
        for op in item.values():
            example = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example", {})
            inline += [v["base64"] for v in example.values() if isinstance(v, dict) and "base64" in v]
    assert inline
    for text in inline:
        image = images.load_bytes(images.decode_base64(text))
        assert min(image.width, image.height) >= images.MIN_SIDE


def test_the_spec_is_json_the_tools_read():
    data = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert data["openapi"].startswith("3.") and data["info"]["title"] == "facegate"
