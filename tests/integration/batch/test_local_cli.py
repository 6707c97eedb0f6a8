"""`python -m facegate_local.batch <folder>`: a batch from a folder, on a laptop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_a_folder_runs_as_a_batch(tmp_path, small_photos):
    folder = tmp_path / "june"
    (folder / "photos").mkdir(parents=True)
    for name, data in small_photos.items():
        (folder / "photos" / name).write_bytes(data)
    lines = [
        {
            "caller_id": "a",
            "vendor": "shuxun",
            "image1": {"s3": {"key": "photos/obama.jpg"}},
            "image2": {"s3": {"key": "photos/obama2.jpg"}},
        },
        {
            "caller_id": "b",
            "vendor": "shuxun",
            "image1": {"s3": {"key": "photos/obama.jpg"}},
            "image2": {"s3": {"key": "photos/nobody.jpg"}},
        },
    ]
    (folder / "june.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{oops\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEGATE_", "AWS_"))}
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "facegate_local.batch", str(folder), "--sandboxes", "--workers", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["total"] == 3 and summary["ok"] == 1
    report = [json.loads(x) for x in (folder / "results" / "june.jsonl").read_text().splitlines()]
    assert [(r["line"], r["status"]) for r in report] == [(1, "ok"), (2, "error"), (3, "error")]
    assert report[1]["error"]["code"] == "IMAGE_UNAVAILABLE" and report[2]["error"]["code"] == "MALFORMED_JSON"
    saved = json.loads((folder / "results" / "june.summary.json").read_text())
    assert saved["batch_id"] == summary["batch_id"] and saved["error_codes"] == {
        "IMAGE_UNAVAILABLE": 1,
        "MALFORMED_JSON": 1,
    }
    assert f"wrote {folder / 'results' / 'june.jsonl'}" in done.stderr


def test_a_folder_needs_exactly_one_manifest(tmp_path):
    (tmp_path / "a.jsonl").write_text("{}\n")
    (tmp_path / "b.csv").write_text("image1\nx\n")
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "facegate_local.batch", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0 and "exactly one manifest" in done.stderr and "a.jsonl, b.csv" in done.stderr
