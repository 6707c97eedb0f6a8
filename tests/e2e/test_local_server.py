"""`make run` end to end: the server as a subprocess, the real template and
handlers, the built-in engine, emulated AWS; checked over HTTP only."""

from __future__ import annotations

import base64

import pytest

pytestmark = pytest.mark.e2e

ERROR_FIELDS = {"code", "message", "retryable", "vendor", "vendor_code", "vendor_message"}


def assert_contract_error(response, status: int | range, code: str | None = None) -> dict:
    if isinstance(status, int):
        assert response.status_code == status, response.text
    else:
        assert response.status_code in status, response.text
    body = response.json()
    assert set(body) == {"request_id", "error"}
    assert set(body["error"]) == ERROR_FIELDS
    assert isinstance(body["request_id"], str) and body["request_id"]
    if code is not None:
        assert body["error"]["code"] == code
    return body


@pytest.fixture(scope="module")
def b64(face_bytes):
    return lambda name: base64.b64encode(face_bytes(name)).decode()


def compare(api, url, image1: str, image2: str):
    return api.post(f"{url}/v1/compare", json={"image1": {"base64": image1}, "image2": {"base64": image2}}, timeout=60)


def test_the_only_stdout_line_is_the_ready_line(local_server):
    assert local_server.stdout_lines == [
        f"facegate is serving on {local_server.base_url} "
        "(x-api-key: from FACEGATE_API_KEY and 1 more from FACEGATE_API_KEYS)"
    ]


def test_a_missing_or_wrong_api_key_is_forbidden(local_server):
    with local_server.session() as s:
        assert_contract_error(s.get(f"{local_server.base_url}/v1/vendors", timeout=10), 403, "FORBIDDEN")
        wrong = s.get(f"{local_server.base_url}/v1/vendors", headers={"x-api-key": "local-dev-key"}, timeout=10)
        assert_contract_error(wrong, 403, "FORBIDDEN")


def test_an_unknown_route_is_not_found(api, local_server):
    assert_contract_error(api.get(f"{local_server.base_url}/v1/nothing", timeout=10), 404, "NOT_FOUND")


def test_vendors_lists_the_local_engine_and_the_configured_vendor(api, local_server):
    r = api.get(f"{local_server.base_url}/v1/vendors", timeout=30)
    assert r.status_code == 200, r.text
    vendors = {v["id"]: v for v in r.json()["vendors"]}
    assert {"local", "shuxun", "kuaidi100", "face2", "zoloz", "jumei"} <= set(vendors)
    assert vendors["local"]["configured"] is True
    assert vendors["shuxun"]["configured"] is True  # from FACEGATE_CREDENTIALS
    assert vendors["zoloz"]["configured"] is False  # the template's placeholder secret
    assert r.json()["default_vendor"] == "local"


def test_the_same_person_matches(api, local_server, b64):
    r = compare(api, local_server.base_url, b64("obama.jpg"), b64("obama2.jpg"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["decision"], body["match"], body["vendor"], body["operation"]) == (
        "match",
        True,
        "local",
        "compare",
    )
    assert 0 <= body["similarity"] <= 1 and body["similarity"] >= body["threshold"]
    assert isinstance(body["latency_ms"], int)


def test_different_people_do_not_match(api, local_server, b64):
    r = compare(api, local_server.base_url, b64("obama.jpg"), b64("biden.jpg"))
    assert r.status_code == 200, r.text
    assert (r.json()["decision"], r.json()["match"]) == ("no_match", False)


def test_an_image_that_is_not_base64_is_the_callers_mistake(api, local_server, b64):
    r = compare(api, local_server.base_url, "this is *not* base64!", b64("obama.jpg"))
    assert_contract_error(r, range(400, 500))


def test_a_result_can_be_read_back_without_any_image_data(api, local_server, b64):
    image1, image2 = b64("obama.jpg"), b64("obama2.jpg")
    compared = compare(api, local_server.base_url, image1, image2)
    assert compared.status_code == 200, compared.text
    request_id = compared.json()["request_id"]
    r = api.get(f"{local_server.base_url}/v1/results/{request_id}", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["request_id"] == request_id
    assert r.json()["decision"] == "match"
    for image in (image1, image2):
        for start in (0, len(image) // 2):
            assert image[start : start + 64] not in r.text


def test_an_unknown_result_is_not_found(api, local_server):
    r = api.get(f"{local_server.base_url}/v1/results/01ARZ3NDEKTSV4RRFFQ69G5FAV", timeout=30)
    assert_contract_error(r, 404, "NOT_FOUND")


def test_each_key_is_a_tenant_and_only_the_owner_erases(api, other_api, local_server, b64):
    url = local_server.base_url
    r = api.post(f"{url}/v1/detect", json={"image": {"base64": b64("obama.jpg")}}, timeout=60)
    assert r.status_code == 200, r.text
    rid = r.json()["request_id"]
    mine = f"{url}/v1/results/{rid}"
    assert api.get(mine, timeout=30).status_code == 200

    # B sees nothing, exactly as for an id that never existed, and cannot erase it.
    theirs = assert_contract_error(other_api.get(mine, timeout=30), 404, "NOT_FOUND")
    assert rid in theirs["error"]["message"]
    assert_contract_error(other_api.delete(mine, timeout=30), 404, "NOT_FOUND")
    assert api.get(mine, timeout=30).status_code == 200  # survived

    # A erases it: 204, no body; then it is gone for A too.
    r = api.delete(mine, timeout=30)
    assert (r.status_code, r.content) == (204, b"")
    assert_contract_error(api.get(mine, timeout=30), 404, "NOT_FOUND")
    assert_contract_error(api.delete(mine, timeout=30), 404, "NOT_FOUND")


def test_the_access_log_has_no_bodies(api, local_server, b64):
    image = b64("obama.jpg")
    compare(api, local_server.base_url, image, image)
    log = local_server.stderr()
    assert "POST /v1/compare 200 " in log
    assert image[:64] not in log and image[-64:] not in log


@pytest.fixture(scope="module")
def sandboxed(local_server_factory):
    """A second server in FACEGATE_SANDBOXES=1 mode: every commercial vendor is a
    protocol-checking sandbox on loopback, reached through the emulated secrets."""
    return local_server_factory(FACEGATE_SANDBOXES="1")


def test_sandbox_mode_reaches_every_compare_vendor_over_loopback(sandboxed, b64):
    with sandboxed.session() as s:
        s.headers["x-api-key"] = sandboxed.api_key
        vendors = {v["id"]: v for v in s.get(f"{sandboxed.base_url}/v1/vendors", timeout=30).json()["vendors"]}
        assert all(v["configured"] for v in vendors.values())
        for vendor in ("shuxun", "kuaidi100", "face2", "zoloz"):
            body = {"vendor": vendor, "image1": {"base64": b64("obama.jpg")}, "image2": {"base64": b64("obama2.jpg")}}
            r = s.post(f"{sandboxed.base_url}/v1/compare", json=body, timeout=60)
            assert r.status_code == 200, (vendor, r.text)
            assert (r.json()["vendor"], r.json()["decision"]) == (vendor, "match")
    assert "sandbox shuxun listening on 127.0.0.1:" in sandboxed.stderr()
