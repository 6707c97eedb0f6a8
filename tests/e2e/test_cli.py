"""The installed ``facegate`` command against the real `make run` server (and `batch
run` against the local batch emulation): a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from facegate.models import CompareResponse

pytestmark = pytest.mark.e2e

FACEGATE = Path(sys.executable).parent / "facegate"  # installed by the set-up's `pip install -e .`


@pytest.fixture(scope="module")
def server(local_server_factory, tmp_path_factory):
    """A server of this module's own: the session's ``local_server`` checks that its stdout
    holds only the ready line, and the first invocation of a function prints Powertools'
    cold-start metric there (``single_metric`` ignores POWERTOOLS_METRICS_DISABLED)."""
    credentials = tmp_path_factory.mktemp("cli-credentials") / "credentials.json"
    credentials.write_text(json.dumps({"shuxun": {"app_key": "cli-app-key", "app_secret": "cli-app-secret"}}))
    return local_server_factory(FACEGATE_CREDENTIALS=str(credentials), FACEGATE_API_KEY="cli-e2e-key")


def facegate(*argv: str, server=None, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_")}
    if server is not None:
        env.update(FACEGATE_URL=server.base_url, FACEGATE_API_KEY=server.api_key)
    return subprocess.run(  # noqa: S603 - our own console script
        [str(FACEGATE), *argv], env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd
    )


def test_the_set_up_installs_the_command():
    assert FACEGATE.is_file() and os.access(FACEGATE, os.X_OK)


def test_compare_of_the_same_man_prints_a_match(server, faces):
    done = facegate("compare", str(faces / "obama.jpg"), str(faces / "obama2.jpg"), server=server)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("match — same person (similarity 0.7")
    assert "vendor local" in done.stdout and done.stderr == ""


def test_compare_of_two_men_prints_no_match(server, faces):
    done = facegate("compare", str(faces / "obama.jpg"), str(faces / "biden.jpg"), server=server)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no match — different people")


def test_compare_json_is_the_apis_answer_and_its_record_can_be_read_back(server, faces):
    done = facegate("compare", str(faces / "obama.jpg"), str(faces / "obama2.jpg"), "--json", server=server)
    assert done.returncode == 0, done.stderr
    answer = CompareResponse.model_validate_json(done.stdout)
    assert answer.decision == "match" and answer.vendor == "local" and answer.match is True
    record = facegate("results", answer.request_id, "--json", server=server)
    assert record.returncode == 0, record.stderr
    assert json.loads(record.stdout)["request_id"] == answer.request_id


def test_a_missing_file_is_one_stderr_line_and_a_failure(server, faces, tmp_path):
    done = facegate("compare", str(faces / "obama.jpg"), str(tmp_path / "nobody.jpg"), server=server)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"facegate: error: {tmp_path / 'nobody.jpg'}: no such file"]


def test_a_refused_request_is_one_line_with_the_contract_code(server, tmp_path):
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("shopping list")
    done = facegate("detect", str(not_a_photo), server=server)
    assert done.returncode == 1 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: UNSUPPORTED_IMAGE_FORMAT: ") or line.startswith("error: INVALID_IMAGE: ")
    assert "(request_id " in line


def test_detect_and_vendors_in_words(server, faces):
    done = facegate("detect", str(faces / "obama.jpg"), server=server)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1 face (vendor local")
    vendors = facegate("vendors", server=server)
    assert vendors.returncode == 0, vendors.stderr
    rows = {line.split()[0]: line.split() for line in vendors.stdout.splitlines()[1:-1]}
    assert rows["local"][1] == "*" and "yes" in rows["local"]
    assert "yes" in rows["shuxun"] and "no" in rows["zoloz"]  # this server configures shuxun only


def test_batch_run_runs_a_folder_locally(faces, tmp_path):
    folder = tmp_path / "pairs"
    (folder / "photos").mkdir(parents=True)
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        (folder / "photos" / name).write_bytes((faces / name).read_bytes())

    def pair(caller_id: str, a: str, b: str) -> str:
        return json.dumps({"caller_id": caller_id, "image1": {"s3": {"key": a}}, "image2": {"s3": {"key": b}}}) + "\n"

    (folder / "pairs.jsonl").write_text(
        pair("same", "photos/obama.jpg", "photos/obama2.jpg") + pair("other", "photos/obama.jpg", "photos/biden.jpg")
    )
    done = facegate("batch", "run", str(folder), timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "batch [" in done.stderr  # the progress bar
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["total"] == 2
    report = [json.loads(x) for x in (folder / "results" / "pairs.jsonl").read_text().splitlines()]
    assert [(r["caller_id"], r["result"]["decision"]) for r in report] == [("same", "match"), ("other", "no_match")]
