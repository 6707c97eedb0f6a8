"""facegate.client against a scripted fake API over loopback HTTP: what is retried,
with which Idempotency-Key, after how long; and how answers and errors come back."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import date

import pytest

from facegate.client import ApiError, Client, ImageNotReadable, Unreachable, image_input
from facegate.models import CompareResponse

from .fakeapi import COMPARE_ANSWER, FakeApi, Reply, error_reply, free_port, ok_reply


class Sleeps(list):
    """The client's sleep: records each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(url: str, **kw) -> tuple[Client, Sleeps]:
    sleeps = Sleeps()
    kw.setdefault("max_retries", 3)
    return Client(url, "test-key", sleep=sleeps, **kw), sleeps


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"\xff\xd8\xff not really a jpeg")
    return path


def keys(api: FakeApi) -> list[str | None]:
    return [s.headers.get("Idempotency-Key") for s in api.seen]


def test_a_retryable_answer_is_retried_with_the_same_idempotency_key(fake_api, photo):
    fake_api.on(
        "POST",
        "/v1/compare",
        error_reply(503, "VENDOR_UNAVAILABLE", retryable=True),
        error_reply(504, "VENDOR_TIMEOUT", retryable=True),
        ok_reply(COMPARE_ANSWER),
    )
    client, sleeps = make_client(fake_api.url)
    answer = client.compare(photo, photo)
    assert isinstance(answer, CompareResponse) and answer.decision == "match" and answer.similarity == 0.7119
    assert len(fake_api.seen) == 3 and len(sleeps) == 2
    first = keys(fake_api)[0]
    assert first is not None and uuid.UUID(first)  # a UUID, made once …
    assert keys(fake_api) == [first, first, first]  # … and sent on every retry
    assert {s.body for s in fake_api.seen} == {fake_api.seen[0].body}  # the same request each time
    assert all(s.headers["x-api-key"] == "test-key" for s in fake_api.seen)


def test_each_logical_request_has_its_own_key(fake_api, photo):
    fake_api.on("POST", "/v1/compare", ok_reply(COMPARE_ANSWER))
    client, _ = make_client(fake_api.url)
    client.compare(photo, photo)
    client.compare(photo, photo)
    first, second = keys(fake_api)
    assert first and second and first != second


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "INVALID_REQUEST"), (422, "NO_FACE"), (403, "FORBIDDEN"), (404, "NOT_FOUND"), (413, "IMAGE_TOO_LARGE")],
)
def test_a_caller_error_is_not_retried(fake_api, photo, status, code):
    fake_api.on("POST", "/v1/compare", error_reply(status, code, request_id="01ERR"), ok_reply(COMPARE_ANSWER))
    client, sleeps = make_client(fake_api.url)
    with pytest.raises(ApiError) as caught:
        client.compare(photo, photo)
    e = caught.value
    assert (e.status, e.code, e.retryable, e.request_id) == (status, code, False, "01ERR")
    assert len(fake_api.seen) == 1 and sleeps == []


def test_a_5xx_the_api_calls_not_retryable_is_not_retried(fake_api, photo):
    # Out of quota: asking again cannot help, and the body says so.
    fake_api.on("POST", "/v1/compare", error_reply(503, "VENDOR_QUOTA_EXHAUSTED", retryable=False))
    client, sleeps = make_client(fake_api.url)
    with pytest.raises(ApiError) as caught:
        client.compare(photo, photo)
    assert caught.value.code == "VENDOR_QUOTA_EXHAUSTED" and len(fake_api.seen) == 1 and sleeps == []


def test_retry_after_is_honoured(fake_api, photo):
    fake_api.on(
        "POST",
        "/v1/compare",
        error_reply(429, "RATE_LIMITED", retryable=True, **{"Retry-After": "7"}),
        ok_reply(COMPARE_ANSWER),
    )
    client, sleeps = make_client(fake_api.url, backoff_base=0.01, backoff_max=0.02)
    client.compare(photo, photo)
    assert sleeps == [7.0]  # jitter alone would have waited at most 0.02 s


def test_backoff_grows_with_jitter_and_retries_end(fake_api, photo):
    fake_api.on("POST", "/v1/compare", error_reply(503, "VENDOR_UNAVAILABLE", retryable=True))
    client, sleeps = make_client(fake_api.url, max_retries=4, backoff_base=1.0, backoff_max=100.0)
    with pytest.raises(ApiError) as caught:
        client.compare(photo, photo)
    assert caught.value.retryable is True and len(fake_api.seen) == 5
    windows = [1.0, 2.0, 4.0, 8.0]
    assert len(sleeps) == 4 and all(0 <= s <= w for s, w in zip(sleeps, windows, strict=True))


def test_a_deployment_without_a_key_store_gets_the_request_once_without_the_header(fake_api, photo):
    fake_api.on(
        "POST",
        "/v1/compare",
        error_reply(501, "IDEMPOTENCY_NOT_CONFIGURED"),
        ok_reply(COMPARE_ANSWER),
    )
    client, sleeps = make_client(fake_api.url)
    assert client.compare(photo, photo).decision == "match"
    assert keys(fake_api)[0] is not None and keys(fake_api)[1] is None and sleeps == []
    client.compare(photo, photo)  # remembered: no header, no second 501
    assert keys(fake_api)[2] is None and client.idempotency_supported is False


def test_require_idempotency_makes_the_501_an_error(fake_api, photo):
    fake_api.on("POST", "/v1/compare", error_reply(501, "IDEMPOTENCY_NOT_CONFIGURED"), ok_reply(COMPARE_ANSWER))
    client, _ = make_client(fake_api.url, require_idempotency=True)
    with pytest.raises(ApiError) as caught:
        client.compare(photo, photo)
    assert caught.value.code == "IDEMPOTENCY_NOT_CONFIGURED" and len(fake_api.seen) == 1


def test_a_refused_connection_is_retried_then_reaches_the_server(photo):
    port = free_port()
    started: list[FakeApi] = []

    def sleep_then_start(seconds: float) -> None:  # the server comes up while the client waits
        if not started:
            api = FakeApi(port)
            api.on("POST", "/v1/compare", ok_reply(COMPARE_ANSWER))
            started.append(api)

    client = Client(f"http://127.0.0.1:{port}", "k", sleep=sleep_then_start, max_retries=2)
    try:
        assert client.compare(photo, photo).decision == "match"
        assert len(started[0].seen) == 1
    finally:
        for api in started:
            api.stop()


def test_an_unreachable_server_is_one_error_after_the_retries(photo):
    client, sleeps = make_client(f"http://127.0.0.1:{free_port()}", max_retries=2)
    with pytest.raises(Unreachable, match="connection refused"):
        client.compare(photo, photo)
    assert len(sleeps) == 2


def test_a_lost_answer_is_retried_only_with_an_idempotency_key(fake_api, photo):
    slow = Reply(200, '{"late": true}', delay_s=1.0)
    fake_api.on("POST", "/v1/compare", slow, ok_reply(COMPARE_ANSWER))
    client, _ = make_client(fake_api.url, read_timeout=0.3)
    assert client.compare(photo, photo).decision == "match"
    assert len(fake_api.seen) == 2 and keys(fake_api)[0] == keys(fake_api)[1] is not None

    # Without a key store a repeat could bill twice: the lost answer ends the call.
    fake_api.seen.clear()
    fake_api.on("POST", "/v1/compare", slow, ok_reply(COMPARE_ANSWER))
    client.idempotency_supported = False
    with pytest.raises(Unreachable, match="no answer"):
        client.compare(photo, photo)
    assert len(fake_api.seen) == 1 and keys(fake_api) == [None]


def test_an_answer_that_is_not_the_contract_is_still_an_api_error(fake_api):
    fake_api.on("GET", "/v1/vendors", Reply(502, "<html>Bad Gateway</html>"))
    client, sleeps = make_client(fake_api.url)
    with pytest.raises(ApiError) as caught:
        client.vendors()
    assert caught.value.code == "HTTP_502" and caught.value.retryable is False and sleeps == []


def test_images_from_a_path_bytes_a_url_and_s3(fake_api, photo):
    fake_api.on("POST", "/v1/compare", ok_reply(COMPARE_ANSWER))
    client, _ = make_client(fake_api.url)
    client.compare(str(photo), b"raw bytes", vendor="shuxun", fallback=["local"], security_level="high")
    client.compare("https://example.com/a.jpg", "s3://my-bucket/photos/b.jpg")
    first, second = (s.json() for s in fake_api.seen)
    assert first["image1"] == {"base64": base64.b64encode(photo.read_bytes()).decode()}
    assert first["image2"] == {"base64": base64.b64encode(b"raw bytes").decode()}
    assert (first["vendor"], first["fallback"], first["security_level"]) == ("shuxun", ["local"], "high")
    assert second["image1"] == {"url": "https://example.com/a.jpg"}
    assert second["image2"] == {"s3": {"bucket": "my-bucket", "key": "photos/b.jpg"}}


def test_a_missing_image_file_is_refused_before_any_request(fake_api, tmp_path):
    client, _ = make_client(fake_api.url)
    with pytest.raises(ImageNotReadable, match="no such file"):
        client.detect(tmp_path / "nope.jpg")
    with pytest.raises(ImageNotReadable, match="directory"):
        image_input(tmp_path)
    assert fake_api.seen == []


def test_reads_and_deletes_use_the_contract_routes(fake_api):
    fake_api.on(
        "GET",
        "/v1/usage",
        ok_reply({"from": "2026-11-01", "to": "2026-11-30", "currency": "CNY", "vendors": [
            {"vendor": "local", "operation": "compare", "calls": 3, "billed": 0, "billing_unknown": 0,
             "errors": 1, "estimated_cost": 0.0}
        ]}),
    )  # fmt: skip
    fake_api.on("DELETE", "/v1/results/01ABC", Reply(204))
    fake_api.on("GET", "/v1/vendors", ok_reply({"vendors": [], "default_vendor": "local"}))
    client, _ = make_client(fake_api.url)
    usage = client.usage(from_="2026-11-01", to="2026-11-30")
    assert usage.from_ == date(2026, 11, 1) and usage.vendors[0].calls == 3 and usage.currency == "CNY"
    assert fake_api.seen[0].query == {"from": ["2026-11-01"], "to": ["2026-11-30"]}
    assert client.delete_result("01ABC") is None
    assert (fake_api.seen[1].method, fake_api.seen[1].path) == ("DELETE", "/v1/results/01ABC")
    assert client.vendors().default_vendor == "local"
    assert all("Idempotency-Key" not in s.headers for s in fake_api.seen)  # only POST operations carry one


def test_a_lost_answer_to_a_read_is_retried(fake_api):
    fake_api.on(
        "GET",
        "/v1/vendors",
        Reply(200, "{}", delay_s=1.0),
        ok_reply({"vendors": [], "default_vendor": "local"}),
    )
    client, _ = make_client(fake_api.url, read_timeout=0.3)
    assert client.vendors().default_vendor == "local" and len(fake_api.seen) == 2


def test_answers_are_read_as_utf8_whatever_the_content_type_says(fake_api):
    vendor = {"id": "jumei", "name": "聚美智数", "operations": [], "configured": False}
    body = json.dumps({"vendors": [vendor], "default_vendor": "local"}, ensure_ascii=False)
    fake_api.on("GET", "/v1/vendors", Reply(200, body, {"Content-Type": "text/plain"}))
    client, _ = make_client(fake_api.url)
    assert client.vendors().vendors[0].name == "聚美智数"
