"""Schemathesis against `make run`: every operation of docs/openapi.json (the spec the server
serves), with the spec's own examples, inputs that cover its constraints and their negations,
and fuzzed inputs, valid and invalid. Whatever is sent, the answer is never a 5xx, its status
is one the spec declares for that operation, its body has the declared media type and schema,
and what the spec forbids is refused with a 4xx (the contract: a caller's mistake is a 4xx).

Generated images are random text, so most generated requests stop at the image checks; the
spec's examples carry a real (faceless) JPEG, and the real photos below take every body route
to its 200 answer, checked against the spec the same way.

Bounded for CI and reproducible: a fixed seed, deterministic generation, a fixed number of
fuzzed examples per operation, and no stateful phase (the links between operations are
exercised by test_local_server.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from facegate import errors
from facegate_local import openapi
from facegate_local.sandboxes import jumei

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("schemathesis")]


def _codes(cls: type[errors.FacegateError]) -> set[str]:
    return {cls.code}.union(*(_codes(sub) for sub in cls.__subclasses__()))


VENDOR_TROUBLE = _codes(errors.VendorError)


@schemathesis.check
def five_hundreds_are_vendor_trouble(ctx, response, case):
    """The contract's 5xx are 502/503/504 for vendor trouble (a vendor not configured, down,
    out of quota, timing out...): such an answer must name one of those codes; 500 never."""
    if response.status_code < 500:
        return None
    code = response.json()["error"]["code"]
    assert response.status_code != 500 and code in VENDOR_TROUBLE, (
        f"{response.status_code} {code} is not vendor trouble"
    )
    return True


SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
# Enough to find what the examples and coverage phases miss; small enough for a loaded 2-core machine.
FUZZED_EXAMPLES = 30
CHECKS = {
    "enabled": False,  # only these
    # 502/503/504 are the contract's answers for vendor trouble, checked by the check above.
    "not_a_server_error": {"enabled": True, "expected-statuses": ["2xx", "3xx", "4xx", "502", "503", "504"]},
    "five_hundreds_are_vendor_trouble": {"enabled": True},
    "status_code_conformance": {"enabled": True},
    "content_type_conformance": {"enabled": True},
    "response_schema_conformance": {"enabled": True},
    "negative_data_rejection": {"enabled": True, "expected-statuses": ["4xx"]},
}
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20240611,
        "generation": {
            "mode": "all",
            "max-examples": FUZZED_EXAMPLES,
            "deterministic": True,
            "database": "none",
            # The key is always sent (below): a generated or missing one only meets the
            # gateway's 403, which test_local_server.py covers, and would spend the budget.
            "with-security-parameters": False,
        },
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},
        },
        "checks": CHECKS,
    }
)
schema = schemathesis.openapi.from_path(SPEC, config=CONFIG)
# The spec's own example image: a real (faceless) JPEG the engine and the vendors can read.
REAL_IMAGE = openapi.EXAMPLES[("/v1/detect", "post")]["image"]


@schema.hook
def flatmap_body(context, body):
    """Half the generated bodies get a real image wherever they carry a base64 one, so the
    generated vendors, fallbacks, options and thresholds get past the image checks to the
    engine, the vendors' adapters and their sandboxes; the other half keep the random text."""
    if not isinstance(body, dict):
        return st.just(body)
    real = {k: REAL_IMAGE if isinstance(v, dict) and isinstance(v.get("base64"), str) else v for k, v in body.items()}
    return st.sampled_from([body, real])


def call_and_validate(case, server):
    return case.call_and_validate(base_url=server.base_url, headers={"x-api-key": server.api_key}, timeout=60)


@pytest.fixture(scope="module")
def server(local_server_factory):
    """`make run` with every commercial vendor a protocol-checking sandbox on loopback, so a
    request naming any vendor reaches that vendor's adapter, not only the local engine."""
    return local_server_factory(FACEGATE_SANDBOXES="1", FACEGATE_API_KEY="schemathesis-key")


def test_the_server_serves_the_spec_under_test(server):
    with server.session() as s:
        served = s.get(f"{server.base_url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == schema.raw_schema


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_spec(case, server):
    call_and_validate(case, server)


@pytest.fixture(scope="module")
def photo(face_bytes):
    return lambda name: {"base64": base64.b64encode(face_bytes(name)).decode()}


def test_real_photos_get_answers_that_conform_to_the_spec(server, photo):
    """The 200 (and 204) answers that generated requests rarely reach: each body route with
    real faces (the local engine; jumei's sandbox for identity), then the stored results
    read back and erased."""
    posts = {
        "/v1/compare": {"image1": photo("obama.jpg"), "image2": photo("obama2.jpg"), "vendor": "local"},
        "/v1/detect": {"image": photo("biden.jpg"), "max_faces": 3},
        "/v1/features": {"image": photo("32bit.png"), "vendor": "local"},
    }
    request_ids = []
    for path, body in posts.items():
        response = call_and_validate(schema[path]["POST"].Case(body=body), server)
        assert response.status_code == 200, response.text
        request_ids.append(response.json()["request_id"])
    identity = {"name": jumei.DEFAULT_NAME, "id_number": jumei.DEFAULT_ID_NUMBER, "image": photo("obama.jpg")}
    identity["vendor"] = "jumei"  # the sandbox's public-security record holds this person
    response = call_and_validate(schema["/v1/verify-identity"]["POST"].Case(body=identity), server)
    assert response.status_code == 200, response.text
    for request_id in request_ids:
        parameters = {"request_id": request_id}
        read = call_and_validate(schema["/v1/results/{request_id}"]["GET"].Case(path_parameters=parameters), server)
        assert read.status_code == 200, read.text
        erased = call_and_validate(
            schema["/v1/results/{request_id}"]["DELETE"].Case(path_parameters=parameters), server
        )
        assert erased.status_code == 204, erased.text
    vendors = call_and_validate(schema["/v1/vendors"]["GET"].Case(), server)
    assert vendors.status_code == 200, vendors.text
