"""The ``facegate`` command: ``main([...])`` against a scripted fake API, output captured."""

from __future__ import annotations

import base64
import json

import pytest

from facegate_cli.main import main

from .fakeapi import COMPARE_ANSWER, Reply, error_reply, free_port, ok_reply

DETECT_ANSWER = {
    "request_id": "01DETECT",
    "operation": "detect",
    "vendor": "local",
    "latency_ms": 120,
    "faces": [
        {"box": {"left": 10, "top": 20, "width": 100, "height": 110}, "confidence": None},
        {"box": {"left": 300, "top": 40, "width": 90, "height": 95}, "confidence": 0.93},
    ],
    "face_count": 2,
    "image_width": 640,
    "image_height": 480,
}
VENDORS_ANSWER = {
    "default_vendor": "local",
    "vendors": [
        {"id": "local", "name": "Built-in engine", "operations": ["compare", "detect", "features"], "configured": True,
         "default": True, "health": {"state": "closed", "recent_failures": 0}},
        {"id": "zoloz", "name": "ZOLOZ", "operations": ["compare"], "configured": False, "default": False,
         "health": {"state": "open", "recent_failures": 5}},
    ],
}  # fmt: skip


@pytest.fixture
def photos(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"\xff\xd8\xff photo a")
    b.write_bytes(b"\xff\xd8\xff photo b")
    return a, b


@pytest.fixture
def run(fake_api, monkeypatch, capsys):
    """run(*argv) -> (exit code, stdout, stderr), talking to the fake API."""
    monkeypatch.setenv("FACEGATE_URL", fake_api.url)
    monkeypatch.setenv("FACEGATE_API_KEY", "cli-key")

    def invoke(*argv: str):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def one_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_compare_says_the_decision_in_words(run, fake_api, photos):
    fake_api.on("POST", "/v1/compare", ok_reply(COMPARE_ANSWER))
    code, out, err = run("compare", str(photos[0]), str(photos[1]), "--vendor", "shuxun", "--fallback", "zoloz,local",
                         "--level", "high")  # fmt: skip
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "match — same person (similarity 0.71 ≥ threshold 0.50, vendor local, 640 ms)"
    assert "01KAM6Z9C3V0W3Q3R8X2J5N1TB" in out
    sent = fake_api.seen[0]
    body = sent.json()
    assert body["image1"] == {"base64": base64.b64encode(photos[0].read_bytes()).decode()}
    assert body["image2"] == {"base64": base64.b64encode(photos[1].read_bytes()).decode()}
    assert (body["vendor"], body["fallback"], body["security_level"]) == ("shuxun", ["zoloz", "local"], "high")
    assert sent.headers["x-api-key"] == "cli-key" and sent.headers.get("Idempotency-Key")


def test_compare_no_match_in_words(run, fake_api, photos):
    fake_api.on(
        "POST",
        "/v1/compare",
        ok_reply({**COMPARE_ANSWER, "decision": "no_match", "match": False, "similarity": 0.29, "latency_ms": 250}),
    )
    code, out, _ = run("compare", str(photos[0]), str(photos[1]))
    assert code == 0
    assert out.splitlines()[0] == "no match — different people (similarity 0.29 < threshold 0.50, vendor local, 250 ms)"


def test_compare_json_prints_the_answer_exactly(run, fake_api, photos):
    raw = json.dumps(COMPARE_ANSWER, indent=1, ensure_ascii=False)  # whatever spacing the API chose
    fake_api.on("POST", "/v1/compare", Reply(200, raw))
    code, out, err = run("compare", str(photos[0]), str(photos[1]), "--json")
    assert code == 0 and err == ""
    assert out == raw + "\n"


def test_urls_and_s3_locations_are_sent_as_such(run, fake_api):
    fake_api.on("POST", "/v1/compare", ok_reply(COMPARE_ANSWER))
    code, _, _ = run("compare", "https://example.com/a.jpg", "s3://photos-bucket/b/c.jpg")
    assert code == 0
    body = fake_api.seen[0].json()
    assert body["image1"] == {"url": "https://example.com/a.jpg"}
    assert body["image2"] == {"s3": {"bucket": "photos-bucket", "key": "b/c.jpg"}}


def test_a_missing_file_is_one_line_and_exit_2_without_a_request(run, fake_api, photos, tmp_path):
    code, out, err = run("compare", str(photos[0]), str(tmp_path / "missing.jpg"))
    assert code == 2 and out == ""
    assert one_line(err) == f"facegate: error: {tmp_path / 'missing.jpg'}: no such file"
    assert fake_api.seen == []


def test_an_unreachable_server_is_one_line_and_exit_3(monkeypatch, capsys, photos):
    monkeypatch.setenv("FACEGATE_URL", f"http://127.0.0.1:{free_port()}")
    code = main(["vendors"])
    out, err = capsys.readouterr()
    assert code == 3 and out == ""
    line = one_line(err)
    assert line.startswith("error: cannot connect to http://127.0.0.1:") and "connection refused" in line


def test_an_api_error_is_one_line_with_code_and_request_id_and_exit_1(run, fake_api, photos):
    fake_api.on("POST", "/v1/compare", error_reply(422, "NO_FACE", request_id="01NOFACE"))
    code, out, err = run("compare", str(photos[0]), str(photos[1]))
    assert code == 1 and out == ""
    assert one_line(err) == "error: NO_FACE: no face (request_id 01NOFACE)"


def test_an_api_error_with_json_also_prints_the_error_body(run, fake_api, photos):
    reply = error_reply(422, "NO_FACE", request_id="01NOFACE")
    fake_api.on("POST", "/v1/compare", reply)
    code, out, err = run("compare", str(photos[0]), str(photos[1]), "--json")
    assert code == 1 and out == reply.body + "\n"
    assert one_line(err).startswith("error: NO_FACE")


@pytest.mark.parametrize(
    "argv",
    [
        ["compare", "a.jpg"],
        ["compare", "a.jpg", "b.jpg", "--vendor", "acme"],
        ["compare", "a.jpg", "b.jpg", "--level", "extreme"],
        ["usage", "--from", "2026-13-01"],
        ["results"],
        ["results", "a", "b", "c"],
        ["nonsense"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(run, fake_api, argv):
    code, out, err = run(*argv)
    assert code == 2 and out == ""
    assert one_line(err).startswith("facegate: error: ")
    assert fake_api.seen == []


def test_help_exits_0(run):
    with pytest.raises(SystemExit) as caught:  # argparse prints help and exits itself …
        raise SystemExit(main(["--help"]))
    assert caught.value.code == 0  # … and main turns that into a return code


def test_detect_lists_the_faces(run, fake_api, photos):
    fake_api.on("POST", "/v1/detect", ok_reply(DETECT_ANSWER))
    code, out, _ = run("detect", str(photos[0]))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "2 faces (vendor local, 120 ms, image 640×480)"
    assert lines[1] == "  face 1: left 10 top 20 width 100 height 110"
    assert lines[2] == "  face 2: left 300 top 40 width 90 height 95 confidence 0.93"


def test_a_strategy_is_sent_as_given_and_ordered_by_default(run, fake_api, photos):
    fake_api.on("POST", "/v1/detect", ok_reply(DETECT_ANSWER))
    assert run("detect", str(photos[0]), "--fallback", "face2", "--strategy", "fastest")[0] == 0
    assert run("detect", str(photos[0]))[0] == 0
    assert [sent.json()["strategy"] for sent in fake_api.seen] == ["fastest", "ordered"]
    code, _, err = run("detect", str(photos[0]), "--strategy", "random")
    assert code == 2 and "--strategy" in one_line(err)
    assert len(fake_api.seen) == 2


def test_features_describes_the_embedding(run, fake_api, photos):
    fake_api.on(
        "POST",
        "/v1/features",
        ok_reply({"request_id": "01F", "operation": "features", "vendor": "local", "latency_ms": 300,
                  "embedding": [0.1] * 128, "dimension": 128, "model": "dlib_resnet_v1"}),
    )  # fmt: skip
    code, out, _ = run("features", str(photos[0]))
    assert code == 0 and out.startswith("128-dimensional embedding, model dlib_resnet_v1 (vendor local, 300 ms)")


def test_verify_identity_sends_the_identity_and_prints_it_masked_only(run, fake_api, photos):
    fake_api.on(
        "POST",
        "/v1/verify-identity",
        ok_reply({**COMPARE_ANSWER, "operation": "verify_identity", "vendor": "jumei",
                  "name_masked": "张*", "id_number_masked": "1101**********1239"}),
    )  # fmt: skip
    code, out, _ = run("verify-identity", "--name", "张三", "--id-number", "110105199003071239", str(photos[0]))
    assert code == 0
    body = fake_api.seen[0].json()
    assert (body["name"], body["id_number"]) == ("张三", "110105199003071239")
    assert "张*, 1101**********1239" in out
    assert "张三" not in out and "110105199003071239" not in out


def test_vendors_is_a_table(run, fake_api):
    fake_api.on("GET", "/v1/vendors", ok_reply(VENDORS_ANSWER))
    code, out, _ = run("vendors")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["vendor", "name", "configured", "health", "operations"]
    assert rows[1][:2] == ["local", "*"] and rows[1][-5:] == ["yes", "closed", "compare,", "detect,", "features"]
    assert rows[2][0] == "zoloz" and rows[2][-3:] == ["no", "open", "compare"]


def test_usage_asks_for_the_dates_and_prints_a_table(run, fake_api):
    fake_api.on(
        "GET",
        "/v1/usage",
        ok_reply({"from": "2026-11-01", "to": "2026-11-30", "currency": "CNY", "vendors": [
            {"vendor": "shuxun", "operation": "compare", "calls": 12, "billed": 10, "billing_unknown": 1,
             "errors": 2, "estimated_cost": 1.5}]}),
    )  # fmt: skip
    code, out, _ = run("usage", "--from", "2026-11-01", "--to", "2026-11-30")
    assert code == 0
    assert fake_api.seen[0].query == {"from": ["2026-11-01"], "to": ["2026-11-30"]}
    lines = out.splitlines()
    assert lines[0] == "usage 2026-11-01 … 2026-11-30"
    assert lines[1].split()[-3:] == ["est.", "cost", "(CNY)"]
    assert lines[2].split() == ["shuxun", "compare", "12", "10", "1", "2", "1.50"]


def test_results_reads_and_deletes(run, fake_api):
    record = {"request_id": "01ABC", "operation": "compare", "status": "ok", "decision": "match", "vendor": None}
    fake_api.on("GET", "/v1/results/01ABC", ok_reply(record))
    fake_api.on("DELETE", "/v1/results/01ABC", Reply(204))
    code, out, _ = run("results", "01ABC")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["request_id", "01ABC"],
        ["operation", "compare"],
        ["status", "ok"],
        ["decision", "match"],
    ]
    code, out, _ = run("results", "delete", "01ABC")
    assert code == 0 and out == "deleted 01ABC\n"
    calls = [(s.method, s.path) for s in fake_api.seen]
    assert calls == [("GET", "/v1/results/01ABC"), ("DELETE", "/v1/results/01ABC")]


def test_results_of_an_unknown_id_is_an_api_error(run, fake_api):
    code, _, err = run("results", "delete", "01NOPE")
    assert code == 1 and one_line(err).startswith("error: NOT_FOUND: ")


def test_tables_line_up_with_chinese_vendor_names(run, fake_api):
    wide = {**VENDORS_ANSWER["vendors"][1], "id": "jumei", "name": "聚美智数 ID"}
    fake_api.on("GET", "/v1/vendors", ok_reply({**VENDORS_ANSWER, "vendors": [*VENDORS_ANSWER["vendors"], wide]}))
    code, out, _ = run("vendors")
    assert code == 0
    header, local, _, jumei = out.splitlines()[:4]
    # "configured" starts in the same terminal column on every row (a wide character is two columns).
    column = header.index("configured")
    assert local.index("yes") == column
    assert jumei.index("no") + sum(1 for ch in jumei[: jumei.index("no")] if "\u4e00" <= ch <= "\u9fff") == column
