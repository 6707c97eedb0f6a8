"""``facegate batch run`` (locally, emulated AWS) and ``facegate batch submit`` (a
deployed stack): a folder with one manifest and the images it names, in; a report out.
The manifest format, and how a batch id follows from the manifest's S3 version, are in
``facegate.batch`` and the README's "Batches from S3"."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegate_cli.aws import aws_errors
from facegate_cli.aws import client as aws_client
from facegate_cli.main import API_ERROR, OK, CommandFailed, UsageError
from facegate_cli.progress import ProgressBar

if TYPE_CHECKING:
    from facegate.client import Client

FINISHED = ("done", "failed")


def _manifest(folder: Path) -> tuple[Path, Path]:
    from facegate_local.batch import find_manifest

    try:
        return find_manifest(folder)
    except SystemExit as e:  # find_manifest says what is wrong with the folder
        raise UsageError(str(e.code).removeprefix("facegate batch: ")) from None


def run_locally(args: argparse.Namespace) -> int:
    """``python -m facegate_local.batch`` with a progress bar instead of progress lines."""
    from facegate_local import batch as local_batch

    _manifest(args.folder)  # a bad folder is a usage error before anything starts
    argv = [str(args.folder), "--workers", str(args.workers), "--timeout", str(args.timeout)]
    if args.out is not None:
        argv += ["--out", str(args.out)]
    if args.stage:
        argv += ["--stage", args.stage]
    if args.sandboxes:
        argv.append("--sandboxes")
    bar = ProgressBar("batch")

    def on_progress(meta: Any) -> None:
        bar.update(meta.done, meta.total, meta.status)
        if meta.status in FINISHED:
            bar.close()

    try:
        code = local_batch.main(argv, on_progress=on_progress)
    except SystemExit as e:
        raise UsageError(str(e.code).removeprefix("facegate batch: ")) from None
    finally:
        bar.close()
    # The runner's own codes: 0 done, 1 bad credentials file, 2 batch failed, 3 stuck.
    return OK if code == 0 else API_ERROR


def submit(args: argparse.Namespace, client: Client) -> int:
    """Upload the folder's images and then its manifest (which starts the batch) to the
    stack's batch bucket, follow ``GET /v1/batches/{id}`` until it is done, download
    the report and summary."""
    from facegate.batch import ManifestRef
    from facegate_local.batch import folder_files, manifest_key

    root, manifest = _manifest(args.folder)
    out = args.out or root / "results"
    files = folder_files(root, manifest, skip=[out])
    s3 = aws_client("s3", args.region)
    bar = ProgressBar("upload")
    with aws_errors("S3"):
        for n, (key, path) in enumerate(files, 1):
            s3.upload_file(str(path), args.bucket, key)
            bar.update(n, len(files))
        key = manifest_key(manifest)
        put = s3.put_object(Bucket=args.bucket, Key=key, Body=manifest.read_bytes())
    bar.close()
    # The id the stack will give this batch: derived from the manifest's bucket, key and version.
    batch_id = ManifestRef(args.bucket, key, put.get("VersionId"), put.get("ETag")).batch_id
    print(f"uploaded {len(files)} file(s) and s3://{args.bucket}/{key}: batch {batch_id}", file=sys.stderr)

    answer, progress = follow(client, batch_id, poll_s=args.poll, timeout_s=args.timeout)
    written = download(s3, args.bucket, progress, out)
    if args.json:
        print(answer.text)
    else:
        print(describe(progress))
        for path in written:
            print(f"wrote {path}")
    if progress.status != "done":
        why = f": {progress.error.code}: {progress.error.message}" if progress.error else ""
        raise CommandFailed(f"batch {batch_id} failed{why}")
    return OK


def follow(client: Client, batch_id: str, *, poll_s: float, timeout_s: float, sleep=time.sleep):
    """Poll the batch until it is done or failed; (the last answer, its BatchProgress).
    Until the splitter has read the manifest the batch is unknown (404): wait for it."""
    from facegate.batch import BatchProgress
    from facegate.client import ApiError, path_segment

    deadline = time.monotonic() + timeout_s
    bar = ProgressBar(f"batch {batch_id}")
    try:
        while True:
            try:
                answer = client.request("GET", f"/v1/batches/{path_segment(batch_id)}")
            except ApiError as e:
                if e.code != "NOT_FOUND":
                    raise
                bar.update(0, None, "waiting for the batch to start")
            else:
                progress = answer.parse(BatchProgress)
                bar.update(progress.done, progress.total, progress.status)
                if progress.status in FINISHED:
                    return answer, progress
            if time.monotonic() > deadline:
                raise CommandFailed(
                    f"batch {batch_id} not finished after {timeout_s:g} s; it goes on: GET /v1/batches/{batch_id}"
                )
            sleep(poll_s)
    finally:
        bar.close()


def download(s3: Any, bucket: str, progress: Any, out: Path) -> list[Path]:
    from facegate.batch import report_key, summary_key

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key in (progress.report or report_key(progress.name), progress.summary or summary_key(progress.name)):
        target = out / Path(key).name
        with aws_errors("S3"):
            s3.download_file(bucket, key, str(target))
        written.append(target)
    return written


def describe(progress: Any) -> str:
    decisions = ", ".join(f"{k} {v}" for k, v in progress.decisions.items() if v)
    return (
        f"batch {progress.batch_id} ({progress.name}): {progress.status}, {progress.total} items, "
        f"{progress.ok} ok, {progress.errors} errors" + (f" ({decisions})" if decisions else "")
    )
