"""``facegate secrets put`` and ``facegate batch submit`` against emulated AWS (moto),
the batch's progress from a scripted fake API."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from facegate.batch import ManifestRef
from facegate_cli.main import main

from .fakeapi import Reply, error_reply, ok_reply

REGION = "us-east-1"
SHUXUN = {"app_key": "key-visible-1234", "app_secret": "s3cr3t-value-5678"}


@pytest.fixture
def aws(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def cli(capsys):
    def invoke(*argv: str):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


# --- secrets put ---------------------------------------------------------------------------------


@pytest.fixture
def secrets(aws):
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="facegate/dev/vendors/shuxun", SecretString='{"configured": false}')
    sm.create_secret(Name="facegate/prod/vendors/face2", SecretString='{"configured": false}')
    return sm


def stored(sm, name: str) -> dict:
    return json.loads(sm.get_secret_value(SecretId=name)["SecretString"])


def test_valid_credentials_are_stored_and_never_printed(secrets, cli, tmp_path):
    path = tmp_path / "shuxun.json"
    path.write_text(json.dumps(SHUXUN))
    code, out, err = cli("secrets", "put", "shuxun", str(path))
    assert code == 0, err
    assert stored(secrets, "facegate/dev/vendors/shuxun") == SHUXUN
    assert "facegate/dev/vendors/shuxun" in out
    for value in SHUXUN.values():
        assert value not in out + err


def test_the_stage_names_the_secret(secrets, cli, tmp_path):
    face2 = {"app_id": "a", "app_secret": "b", "sign_type": "SHA256", "endpoint": "https://face2.example.com"}
    path = tmp_path / "face2.json"
    path.write_text(json.dumps(face2))
    code, _, err = cli("secrets", "put", "face2", str(path), "--stage", "prod")
    assert code == 0, err
    assert stored(secrets, "facegate/prod/vendors/face2") == face2


@pytest.mark.parametrize(
    "secret",
    [
        {"app_key": "key-visible-1234"},  # app_secret missing
        {"app_key": "key-visible-1234", "app_secret": ""},  # empty
        {"app_key": ["key-visible-1234"], "app_secret": "s3cr3t-value-5678"},  # wrong type
    ],
)
def test_invalid_credentials_are_refused_before_anything_is_written_and_not_echoed(secrets, cli, tmp_path, secret):
    path = tmp_path / "shuxun.json"
    path.write_text(json.dumps(secret))
    code, out, err = cli("secrets", "put", "shuxun", str(path))
    assert code == 2 and out == ""
    line = err.strip()
    assert len(err.splitlines()) == 1 and "invalid" in line and "credentials for shuxun" in line
    assert "key-visible-1234" not in err and "s3cr3t-value-5678" not in err
    assert stored(secrets, "facegate/dev/vendors/shuxun") == {"configured": False}


def test_a_file_that_is_not_json_is_refused_without_quoting_it(secrets, cli, tmp_path):
    path = tmp_path / "shuxun.json"
    path.write_text('{"app_key": "key-visible-1234", app_secret: s3cr3t-value-5678}')
    code, _, err = cli("secrets", "put", "shuxun", str(path))
    assert code == 2 and "not JSON (line 1" in err and "s3cr3t" not in err and "key-visible" not in err


def test_a_missing_secret_is_aws_refusing(secrets, cli, tmp_path):
    path = tmp_path / "shuxun.json"
    path.write_text(json.dumps(SHUXUN))
    code, _, err = cli("secrets", "put", "shuxun", str(path), "--stage", "nostage")
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("error: Secrets Manager refused: ResourceNotFoundException")


def test_the_local_engine_needs_no_secret(secrets, cli, tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    code, _, err = cli("secrets", "put", "local", str(path))
    assert code == 2 and "needs no credentials" in err


# --- batch submit --------------------------------------------------------------------------------


def progress(batch_id: str, status: str, done: int, **extra) -> dict:
    return {
        "batch_id": batch_id,
        "name": "june",
        "status": status,
        "manifest": {"bucket": "batch-bucket", "key": "batches/june.jsonl"},
        "total": 2,
        "done": done,
        "ok": done,
        "errors": 0,
        "remaining": 2 - done,
        "decisions": {"match": done, "no_match": 0, "uncertain": 0},
        "created_at": "2026-11-30T00:00:00Z",
        **extra,
    }


def test_batch_submit_uploads_follows_the_derived_id_and_downloads_the_report(aws, fake_api, cli, tmp_path):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="batch-bucket")
    s3.put_bucket_versioning(Bucket="batch-bucket", VersioningConfiguration={"Status": "Enabled"})
    folder = tmp_path / "june"
    (folder / "photos").mkdir(parents=True)
    (folder / "photos" / "a.jpg").write_bytes(b"photo a")
    (folder / "photos" / "b.jpg").write_bytes(b"photo b")
    (folder / ".hidden").write_text("not uploaded")
    line = {"image1": {"s3": {"key": "photos/a.jpg"}}, "image2": {"s3": {"key": "photos/b.jpg"}}}
    (folder / "june.jsonl").write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    # What the stack writes when the batch is done.
    s3.put_object(Bucket="batch-bucket", Key="results/june.jsonl", Body=b'{"line": 1}\n{"line": 2}\n')
    s3.put_object(Bucket="batch-bucket", Key="results/june.summary.json", Body=b'{"status": "done"}')

    # The batch's id follows from the manifest's version, known only once it is uploaded:
    # answer for whatever id the CLI asks about (not yet known, running, done), check it below.
    asked: list[str] = []

    def batch_progress(request) -> Reply:
        batch_id = request.path.rsplit("/", 1)[1]
        asked.append(batch_id)
        if len(asked) == 1:
            return error_reply(404, "NOT_FOUND")
        if len(asked) == 2:
            return ok_reply(progress(batch_id, "running", 1))
        return ok_reply(progress(batch_id, "done", 2, report="results/june.jsonl", summary="results/june.summary.json"))

    fake_api.on_prefix("GET", "/v1/batches/", batch_progress)
    code, out, err = cli("batch", "submit", str(folder), "--bucket", "batch-bucket", "--poll", "0",
                         "--url", fake_api.url)  # fmt: skip
    assert code == 0, err
    head = s3.head_object(Bucket="batch-bucket", Key="batches/june.jsonl")
    expected = ManifestRef("batch-bucket", "batches/june.jsonl", head.get("VersionId"), head["ETag"]).batch_id
    assert asked and set(asked) == {expected} and len(asked) == 3
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="batch-bucket")["Contents"]}
    assert {"photos/a.jpg", "photos/b.jpg", "batches/june.jsonl"} <= keys and ".hidden" not in keys
    assert (folder / "results" / "june.jsonl").read_bytes() == b'{"line": 1}\n{"line": 2}\n'
    assert json.loads((folder / "results" / "june.summary.json").read_text()) == {"status": "done"}
    assert out.splitlines()[0] == f"batch {expected} (june): done, 2 items, 2 ok, 0 errors (match 2)"
    assert "Traceback" not in err


def test_batch_submit_of_a_folder_without_a_manifest_is_a_usage_error(aws, cli, tmp_path):
    code, out, err = cli("batch", "submit", str(tmp_path), "--bucket", "b")
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and "exactly one manifest" in err
