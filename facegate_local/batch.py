"""Batches on a laptop: the template's batch bucket, queues and tables in moto, and
the splitter, worker and dead-letter functions driven the way Lambda's SQS event
source mappings drive them. No AWS account, no Docker.

    python -m facegate_local.batch <folder or manifest> [--workers N] [--out DIR]
                                   [--sandboxes] [--stage dev]

A folder holds one manifest (``*.jsonl`` or ``*.csv`` at its top level) and the
images it names: every other file is uploaded under its path relative to the
folder, so ``{"s3": {"key": "photos/a.jpg"}}`` is ``<folder>/photos/a.jpg``. The
report and summary are written to ``<folder>/results/`` (``--out`` to change).
Vendors: the built-in ``local`` engine, plus whatever ``FACEGATE_CREDENTIALS``
configures, plus (``--sandboxes``) every vendor's loopback sandbox.

Used by the tests and ``bench/batch_bench.py`` too (``LocalBatches``,
``EventSourceMapping``): they exercise the handlers exactly as this CLI does.

What the emulation does, like Lambda's SQS event source mapping: receive up to the
event's ``BatchSize`` messages, invoke the function with an SQS event, delete the
messages the function did not report in ``batchItemFailures``, and leave the others
to come back when their visibility timeout (possibly changed by the function) runs
out. A function that raises, or an execution environment that dies (``Crash``),
leaves the whole batch to come back. The queue's own redrive policy (moto honours
it) moves a message to the dead-letter queue after ``maxReceiveCount`` receives.
Locally nobody wants to wait the queues' real visibility timeouts after a crash, so
``fast_forward`` makes such messages visible at once and advances the batch clock
past any lease the crashed invocation held, as the real timeout would have.

Beside it: ``facegate_local.moto_patches`` (moto made atomic per call and its
DynamoDB transactions O(1), for many workers and long batches) and
``facegate_local.batch_folder`` (a folder's manifest and files as S3 keys).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegate_local import aws
from facegate_local.batch_folder import find_manifest, folder_files, manifest_key
from facegate_local.lambda_context import LambdaContext

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import QueueConfigurationTypeDef
    from mypy_boto3_sqs.literals import QueueAttributeNameType
from facegate_local.moto_patches import fast_transactions, serialize_moto
from facegate_local.template import FunctionSpec, Resolver, Template, Unresolvable, as_bool, functions

ROOT = Path(__file__).resolve().parents[1]
BATCH_FUNCTIONS = ("BatchSplitterFunction", "BatchWorkerFunction", "BatchDlqFunction", "BatchesFunction")
BUCKET = "BatchBucket"
BATCH_TABLE = "BatchTable"
# Locally: no traces, no metric output, quiet logs (as `make run` does).
LOCAL_ENV = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_SERVICE_NAME": "facegate",
    "POWERTOOLS_METRICS_NAMESPACE": "Facegate",
}


class Crash(BaseException):
    """Raised inside a handler to stand for its execution environment dying (timeout,
    out of memory): Powertools' batch processor does not catch it, nothing after it
    runs, and the invocation returns nothing."""


class Stuck(Exception):
    """The batch did not finish: something would be lost."""


# --- the moto side --------------------------------------------------------------------------


@dataclass(frozen=True)
class Queue:
    logical_id: str
    name: str
    url: str
    arn: str
    visibility_timeout: int
    max_receives: int | None


def create_queues(template: Template, resolver: Resolver, region: str) -> dict[str, Queue]:
    """Every ``AWS::SQS::Queue`` of the template in moto, dead-letter queues first, each
    registered with the resolver (Ref = URL; Arn, QueueName, QueueUrl attributes). Queues
    the AWS emulation already made (``facegate_local.aws`` creates them too) are reused."""
    import boto3

    sqs = boto3.client("sqs", region_name=region)
    pending = dict(template.of_type("AWS::SQS::Queue"))
    made: dict[str, Queue] = {}
    while pending:
        progress = False
        for logical, resource in list(pending.items()):
            try:
                props = resolver.resolve(resource.get("Properties") or {})
            except Unresolvable:
                continue
            name = props.get("QueueName") or resolver.default_name(logical)
            redrive = props.get("RedrivePolicy")
            existing = resolver.physical(logical)
            if existing is not None:
                arn = resolver.resolve({"Fn::GetAtt": [logical, "Arn"]})
                made[logical] = Queue(
                    logical,
                    name,
                    existing,
                    arn,
                    int(props.get("VisibilityTimeout", 30)),
                    int(redrive["maxReceiveCount"]) if redrive else None,
                )
                del pending[logical]
                progress = True
                continue
            copied: tuple[QueueAttributeNameType, ...] = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds")
            attributes: dict[QueueAttributeNameType, str] = {k: str(props[k]) for k in copied if k in props}
            if redrive:
                attributes["RedrivePolicy"] = json.dumps(
                    {
                        "deadLetterTargetArn": redrive["deadLetterTargetArn"],
                        "maxReceiveCount": int(redrive["maxReceiveCount"]),
                    }
                )
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            resolver.set_physical(logical, url, Arn=arn, QueueName=name, QueueUrl=url)
            made[logical] = Queue(
                logical,
                name,
                url,
                arn,
                int(props.get("VisibilityTimeout", 30)),
                int(redrive["maxReceiveCount"]) if redrive else None,
            )
            del pending[logical]
            progress = True
        if not progress:
            raise Unresolvable(f"cannot create the queues {', '.join(pending)} locally")
    return made


def configure_bucket(template: Template, resolver: Resolver, logical: str, region: str) -> str:
    """Versioning and SQS notifications of one bucket, as the template declares them
    (the AWS emulation creates buckets without either)."""
    import boto3

    props = resolver.resolve(template.resources[logical].get("Properties") or {})
    bucket = resolver.resolve({"Ref": logical})
    s3 = boto3.client("s3", region_name=region)
    if (props.get("VersioningConfiguration") or {}).get("Status") == "Enabled":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    queues: list[QueueConfigurationTypeDef] = []
    for q in (props.get("NotificationConfiguration") or {}).get("QueueConfigurations") or []:
        rules = ((q.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
        entry: QueueConfigurationTypeDef = {"QueueArn": q["Queue"], "Events": [q["Event"]]}
        if rules:
            entry["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
        queues.append(entry)
    if queues:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"QueueConfigurations": queues}
        )
    return bucket


# --- Lambda's side -------------------------------------------------------------------------


class OffsetClock:
    """Wall time plus an offset that only grows: advancing it stands for waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def sqs_event(messages: list[dict[str, Any]], queue: Queue, region: str) -> dict[str, Any]:
    """An SQS event as Lambda's event source mapping delivers it (the shape of
    ``sam local generate-event sqs receive-message``)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes") or {}),
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue.arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


@dataclass
class EventSourceMapping:
    """One SQS event of one function: queue → handler, the way Lambda runs it."""

    queue: Queue
    function: FunctionSpec
    handler: Callable[[dict, Any], Any]
    batch_size: int
    region: str
    fast_forward: bool = True
    # Tests: may a successfully processed message be deleted? False stands for a lost ack.
    ack: Callable[[dict[str, Any]], bool] | None = None
    on_crash: Callable[[], None] | None = None
    invocations: int = 0
    crashes: int = 0
    _sqs: Any = field(default=None, repr=False)

    @property
    def sqs(self):
        if self._sqs is None:
            import boto3

            self._sqs = boto3.client("sqs", region_name=self.region)
        return self._sqs

    def poll(self) -> int:
        """Receive one batch and invoke the function with it; the number of messages."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue.url,
            MaxNumberOfMessages=min(10, self.batch_size),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        self.invocations += 1
        context = LambdaContext(
            function_name=self.function.name,
            memory_limit_in_mb=str(self.function.memory_mb),
            invoked_function_arn=f"arn:aws:lambda:{self.region}:{aws_account(self.queue.arn)}:function:"
            f"{self.function.name}",
            timeout_s=float(self.function.timeout_s),
        )
        try:
            result = self.handler(sqs_event(messages, self.queue, self.region), context)
        except (Exception, Crash):
            # A function error or a dead environment: nothing is deleted, and every
            # message of the batch comes back after the visibility timeout.
            self.crashes += 1
            if self.fast_forward:
                self._visible_now(messages)
                if self.on_crash is not None:
                    self.on_crash()
            return len(messages)
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures") or []}
        done = [m for m in messages if m["MessageId"] not in failed]
        lost = [m for m in done if self.ack is not None and not self.ack(m)]
        keep = {m["MessageId"] for m in lost}
        to_delete = [m for m in done if m["MessageId"] not in keep]
        for i in range(0, len(to_delete), 10):
            chunk = to_delete[i : i + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue.url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(chunk)],
            )
        if lost:
            self._visible_now(lost)
        if failed and self.fast_forward and self.function.logical_id != "BatchWorkerFunction":
            # The worker sets its own backoff; the others would wait the queue's timeout.
            self._visible_now([m for m in messages if m["MessageId"] in failed])
        return len(messages)

    def _visible_now(self, messages: Iterable[dict[str, Any]]) -> None:
        from botocore.exceptions import ClientError

        for m in messages:
            # A message already deleted by a later delivery has nothing to show.
            with contextlib.suppress(ClientError):
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )


def aws_account(arn: str) -> str:
    return arn.split(":")[4]


# --- the whole thing ---------------------------------------------------------------------------


def reset_caches() -> None:
    """Settings, services and stores are cached per process (per Lambda container);
    after the environment changes they must be rebuilt."""
    from aws_lambda_powertools.utilities import parameters

    from facegate import batch_jobs, batch_store, config, service, store

    config.settings.cache_clear()
    service.default_service.cache_clear()
    store.default_store.cache_clear()
    batch_store.default_batch_store.cache_clear()
    batch_jobs.default_jobs.cache_clear()
    parameters.clear_caches()


class LocalBatches:
    """The batch part of the stack in moto (which must be running), and the four batch
    functions, loaded once."""

    def __init__(
        self,
        *,
        template_path: str | Path | None = None,
        stage: str = "dev",
        region: str | None = None,
        secret_values: Mapping[str, str] | None = None,
        parameters: Mapping[str, str] | None = None,
        environ: MutableMapping[str, str] = os.environ,
        env_overrides: Mapping[str, str] | None = None,
        fast_forward: bool = True,
    ) -> None:
        from facegate_local.server import load_handler, merged_environment

        fast_transactions()
        self.region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.template = Template.load(template_path or ROOT / "template.yaml")
        self.stage = stage
        self.resolver = Resolver(self.template, parameters={"Stage": stage, **(parameters or {})}, region=self.region)
        self.specs = functions(self.template, self.resolver)
        self.created = aws.create_resources(
            self.template, self.resolver, region=self.region, secret_values=secret_values
        )
        self.queues = create_queues(self.template, self.resolver, self.region)
        self.bucket = configure_bucket(self.template, self.resolver, BUCKET, self.region)
        self.batch_table = str(self.resolver.resolve({"Ref": BATCH_TABLE}))
        self.results_table = str(self.resolver.resolve({"Ref": "ResultsTable"}))
        env, self.notes = merged_environment(self.specs, self.resolver, set(BATCH_FUNCTIONS))
        self.environment = {**env, **LOCAL_ENV, "FACEGATE_STAGE": stage, **(env_overrides or {})}
        environ.update(self.environment)
        reset_caches()
        self.clock = OffsetClock()
        self.handlers = {logical: load_handler(self.specs[logical]) for logical in BATCH_FUNCTIONS}
        self.mappings = self._mappings(fast_forward)

    # --- wiring ---

    def _mappings(self, fast_forward: bool) -> dict[str, EventSourceMapping]:
        """One per SQS event in the template, keyed by the queue's logical id."""
        out = {}
        by_arn = {q.arn: q for q in self.queues.values()}
        for logical in BATCH_FUNCTIONS:
            events = (self.template.resources[logical].get("Properties") or {}).get("Events") or {}
            for event in events.values():
                if event.get("Type") != "SQS":
                    continue
                props = self.resolver.resolve(event.get("Properties") or {})
                queue = by_arn[props["Queue"]]
                if "ReportBatchItemFailures" not in (props.get("FunctionResponseTypes") or []):
                    raise ValueError(f"{logical}: its SQS event must report batch item failures")
                if "Enabled" in props and not as_bool(props["Enabled"]):
                    continue
                out[queue.logical_id] = EventSourceMapping(
                    queue=queue,
                    function=self.specs[logical],
                    handler=self.handlers[logical],
                    batch_size=int(props.get("BatchSize", 10)),
                    region=self.region,
                    fast_forward=fast_forward,
                    on_crash=self._after_crash,
                )
        return out

    def _after_crash(self) -> None:
        # The real redelivery comes after the queue's visibility timeout (6x the
        # function timeout), long after any lease the crashed invocation held.
        self.clock.advance(max(q.visibility_timeout for q in self.queues.values()))

    def install_clock(self) -> None:
        from facegate.batch_jobs import default_jobs

        default_jobs().clock = self.clock

    @property
    def splitter(self) -> EventSourceMapping:
        return self.mappings["ManifestQueue"]

    @property
    def worker(self) -> EventSourceMapping:
        return self.mappings["ItemQueue"]

    @property
    def dead_items(self) -> EventSourceMapping:
        return self.mappings["ItemDLQ"]

    @property
    def dead_manifests(self) -> EventSourceMapping:
        return self.mappings["ManifestDLQ"]

    @property
    def max_concurrency(self) -> int:
        events = self.template.resources["BatchWorkerFunction"]["Properties"]["Events"]
        scaling = next(e["Properties"].get("ScalingConfig") for e in events.values() if e.get("Type") == "SQS")
        return int(self.resolver.resolve(scaling["MaximumConcurrency"])) if scaling else 1

    # --- using it ---

    def s3(self):
        import boto3

        return boto3.client("s3", region_name=self.region)

    def upload(self, key: str, data: bytes) -> dict[str, Any]:
        return self.s3().put_object(Bucket=self.bucket, Key=key, Body=data)

    def upload_folder(self, root: Path, manifest: Path, skip: Iterable[Path] = ()) -> str:
        """Every file of the folder (``folder_files``), then the manifest as
        ``batches/<stem><suffix>``. The name."""
        for key, path in folder_files(root, manifest, skip):
            self.upload(key, path.read_bytes())
        self.upload(manifest_key(manifest), manifest.read_bytes())
        return manifest.stem

    def meta(self, id_or_name: str):
        """A batch by id, or the newest batch of a manifest name (the runner knows the
        name it uploaded; the API takes ids only)."""
        from facegate.batch import is_batch_id
        from facegate.batch_store import default_batch_store

        store = default_batch_store()
        meta = store.get_meta(id_or_name) if is_batch_id(id_or_name) else None
        return meta or store.newest(id_or_name)

    def finished(self, id_or_name: str) -> bool:
        meta = self.meta(id_or_name)
        return meta is not None and meta.status in ("done", "failed")

    def pump_once(self) -> int:
        """One poll of every queue, manifests first; messages handled."""
        self.install_clock()
        n = self.splitter.poll()
        n += self.worker.poll()
        n += self.dead_items.poll()
        n += self.dead_manifests.poll()
        return n

    def run(
        self,
        id_or_name: str,
        *,
        workers: int = 1,
        poll_items: bool = True,
        timeout_s: float = 600.0,
        on_progress: Callable[[Any], None] | None = None,
        between_polls: Callable[[], None] | None = None,
        idle_s: float = 0.1,
    ):
        """Drive the queues until the batch is done or failed; its meta. ``workers``
        threads poll the item queue at once (Lambda instances up to MaximumConcurrency);
        with ``poll_items`` False none does: someone else (``batch_processes``) polls it.
        While others work, this loop (the splitter, the dead-letter queues, progress) waits
        ``idle_s`` after a round that handled nothing: its receives and reads cost the
        emulated AWS CPU that the workers' calls need (Lambda's own pollers cost a stack none)."""
        deadline = time.monotonic() + timeout_s
        stop = threading.Event()
        errors: list[BaseException] = []
        threads = []
        if workers > 1 and poll_items:
            serialize_moto()

            def work() -> None:
                try:
                    while not stop.is_set():
                        if self.worker.poll() == 0:
                            time.sleep(0.02)  # an idle poll costs the emulation CPU the others need
                except BaseException as e:  # surfaced below, not lost in a thread
                    errors.append(e)
                    stop.set()

            self.install_clock()
            threads = [threading.Thread(target=work, name=f"worker-{i}", daemon=True) for i in range(workers)]
        try:
            started = False
            last_report = 0.0
            meta = None
            while True:
                if errors:
                    raise errors[0]
                if between_polls is not None:
                    between_polls()
                self.install_clock()
                handled = self.splitter.poll() + self.dead_items.poll() + self.dead_manifests.poll()
                if not threads and poll_items:
                    handled += self.worker.poll()
                elif not started:
                    for t in threads:
                        t.start()
                    started = True
                # By its id once known: one GetItem a round, not the name's two.
                meta = self.meta(meta.batch_id if meta is not None else id_or_name)
                if on_progress is not None and meta is not None and time.monotonic() - last_report > 1:
                    on_progress(meta)
                    last_report = time.monotonic()
                if meta is not None and meta.status in ("done", "failed"):
                    return meta
                if time.monotonic() > deadline:
                    raise Stuck(
                        f"batch {id_or_name} did not finish in {timeout_s:.0f} s: "
                        + (f"{meta.done}/{meta.total} items, status {meta.status}" if meta else "never started")
                    )
                if handled == 0:
                    # With worker threads this loop only watches: its polls would take
                    # emulation CPU from the workers.
                    time.sleep(idle_s if threads or not poll_items else 0.002)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)

    def read(self, key: str) -> bytes:
        return self.s3().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def report(self, name: str) -> list[dict[str, Any]]:
        from facegate.batch import report_key

        return [json.loads(line) for line in self.read(report_key(name)).decode().splitlines()]

    def summary(self, name: str) -> dict[str, Any]:
        from facegate.batch import summary_key

        return json.loads(self.read(summary_key(name)))


# --- the command ------------------------------------------------------------------------------


def main(
    argv: list[str] | None = None,
    environ: MutableMapping[str, str] = os.environ,
    on_progress: Callable[[Any], None] | None = None,
) -> int:
    """The command; ``on_progress(meta)`` replaces the progress lines on stderr (the
    ``facegate batch run`` CLI draws a progress bar with it)."""
    parser = argparse.ArgumentParser(
        prog="python -m facegate_local.batch",
        description="Run a batch locally: manifest + images from a folder, AWS emulated in-process.",
    )
    parser.add_argument("path", type=Path, help="a folder with one manifest and its images, or a manifest file")
    parser.add_argument("--out", type=Path, help="where to write the report and summary (default: <folder>/results)")
    parser.add_argument("--workers", type=int, default=1, help="worker instances at once (default 1)")
    parser.add_argument("--stage", default=environ.get("FACEGATE_STAGE", "dev"))
    parser.add_argument("--sandboxes", action="store_true", help="start every vendor's loopback sandbox")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    args = parser.parse_args(argv)

    from facegate_local.server import StartupError, read_credentials, start_sandboxes

    root, manifest = find_manifest(args.path)
    out = args.out or root / "results"
    original = dict(environ)
    region = aws.isolate_environment(environ)
    try:
        credentials = read_credentials(original["FACEGATE_CREDENTIALS"]) if original.get("FACEGATE_CREDENTIALS") else {}
    except StartupError as e:
        print(f"facegate batch: error: {e}", file=sys.stderr)
        return 1
    mock = aws.start()
    sandboxes = {}
    try:
        overrides = {"FACEGATE_BATCH_RETRY_BASE_S": original.get("FACEGATE_BATCH_RETRY_BASE_S", "0.5")}
        if args.sandboxes:
            for vendor, (sandbox, creds) in start_sandboxes(set(credentials), sys.stderr).items():
                sandboxes[vendor] = sandbox
                credentials.setdefault(vendor, creds)
            overrides["FACEGATE_ALLOW_HTTP_URLS"] = "true"
        secret_values = {f"facegate/{args.stage}/vendors/{v}": json.dumps(c) for v, c in credentials.items()}
        for name in ("FACEGATE_DEFAULT_VENDOR", "FACEGATE_FALLBACK", "FACEGATE_READ_TIMEOUT"):
            if original.get(name):
                overrides[name] = original[name]
        local = LocalBatches(
            stage=args.stage, region=region, secret_values=secret_values, environ=environ, env_overrides=overrides
        )
        name = local.upload_folder(root, manifest, skip=[out])
        print(
            f"uploaded {manifest.name} as s3://{local.bucket}/batches/{name}{manifest.suffix.lower()}", file=sys.stderr
        )

        def print_progress(meta) -> None:
            total = "?" if meta.total is None else meta.total
            print(f"batch {meta.batch_id} ({meta.name}): {meta.status}, {meta.done}/{total} done", file=sys.stderr)

        progress = on_progress or print_progress

        meta = local.run(name, workers=max(1, args.workers), timeout_s=args.timeout, on_progress=progress)
        progress(meta)
        from facegate.batch import report_key, summary_key

        out.mkdir(parents=True, exist_ok=True)
        for key in (report_key(meta.name), summary_key(meta.name)):
            target = out / Path(key).name
            target.write_bytes(local.read(key))
            print(f"wrote {target}", file=sys.stderr)
        summary = local.summary(meta.name)
        print(json.dumps({k: summary[k] for k in ("batch_id", "status", "total", "ok", "errors", "decisions")}))
        return 0 if meta.status == "done" else 2
    except Stuck as e:
        print(f"facegate batch: error: {e}", file=sys.stderr)
        return 3
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()
        mock.stop()


if __name__ == "__main__":
    sys.exit(main())
