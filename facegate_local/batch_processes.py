"""The batch emulation spread over processes, for measuring throughput: moto as a
server in a process of its own, and each worker instance in a process of its own, as
in AWS, where the queues, tables and bucket are services and each Lambda instance a
separate machine.

``facegate_local.batch`` runs moto, the service and every worker thread in one
interpreter: they share one interpreter lock, which caps that emulation at ~25-30
items/s (bench/RESULTS.md, "Batches"). Here the handlers reach moto over HTTP
(``AWS_ENDPOINT_URL``, which boto3 honours for every client it makes) and only the
splitter and the dead-letter functions stay in the driving process.

    server = MotoServer()                      # a child process
    os.environ.update(server.environment())    # before LocalBatches creates anything
    local = LocalBatches(...)
    with WorkerProcesses(local, workers=4) as pool:
        local.run(name, poll_items=False, between_polls=pool.check)
    server.stop()
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess  # nosec B404
import sys
import time
from pathlib import Path
from typing import Any

# The server: moto's own WSGI app (what ``moto_server`` runs), with every request made
# atomic (in AWS each call is; moto's backends are plain Python objects, and two
# threads updating one DynamoDB item could otherwise interleave) and DynamoDB
# transactions O(1) (``moto_patches.fast_transactions``, as in-process).
_SERVER = """
import json, os, sys, threading, time
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server
from facegate_local.moto_patches import fast_transactions

fast_transactions()
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
costs = {}  # action: [calls, seconds inside the app]

def action(environ):
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1]  # DynamoDB, SQS, Secrets Manager: JSON protocols
    return "S3 " + environ.get("REQUEST_METHOD", "?")

def atomic(environ, start_response):
    with lock:
        t = time.perf_counter()
        body = list(app(environ, start_response))
        cost = costs.setdefault(action(environ), [0, 0.0])
        cost[0] += 1
        cost[1] += time.perf_counter() - t
        return body

class Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass

server = make_server("127.0.0.1", 0, atomic, threaded=True, request_handler=Quiet)
print(json.dumps({"port": server.server_port}), flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
for line in sys.stdin:  # "costs" asks; EOF ends the server
    with lock:
        print(json.dumps(costs), flush=True)
        costs.clear()
server.shutdown()
"""

ROOT = Path(__file__).resolve().parents[1]
IDLE_POLL_S = (0.1, 1.0)  # an idle instance waits after an empty receive: doubling, up to the second


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MotoServer:
    """moto's server on a free loopback port, in a child process."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(  # noqa: S603 - this interpreter, our own script  # nosec B603
            [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("moto server did not start")
        self.url = f"http://127.0.0.1:{json.loads(line)['port']}"

    def environment(self) -> dict[str, str]:
        """What sends every boto3 client of a process to this server, with placeholder keys."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",  # a placeholder, never a real key  # nosec B105
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def costs(self) -> dict[str, tuple[int, float]]:
        """Calls and seconds inside moto per action since the last ask (then cleared)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("costs\n")
        self.proc.stdin.flush()
        return {k: (v[0], v[1]) for k, v in json.loads(self.proc.stdout.readline()).items()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.communicate(timeout=30)


class MotoServers:
    """The emulated AWS as two moto servers, so that two cores can serve it: DynamoDB
    (more than half of moto's time per item, bench/RESULTS.md) in one, everything else
    in the other. S3 and SQS must share one: moto delivers the bucket's notifications
    to the queues inside its own process."""

    def __init__(self) -> None:
        self.main = MotoServer()
        try:
            self.dynamodb = MotoServer()
        except BaseException:
            self.main.stop()
            raise

    def environment(self) -> dict[str, str]:
        return {**self.main.environment(), "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb.url}

    def cpu_seconds(self) -> float:
        return self.main.cpu_seconds() + self.dynamodb.cpu_seconds()

    def costs(self) -> dict[str, tuple[int, float]]:
        return {**self.main.costs(), **self.dynamodb.costs()}

    def stop(self) -> None:
        self.main.stop()
        self.dynamodb.stop()


def _worker(
    environment: dict[str, str], mapping: dict[str, Any], ready: Any, stop: Any, results: Any, index: int
) -> None:
    """One worker instance: poll the item queue and invoke the worker handler, until told to stop."""
    os.environ.clear()
    os.environ.update(environment)
    from facegate.batch_jobs import default_jobs
    from facegate_local.batch import EventSourceMapping, OffsetClock, reset_caches
    from facegate_local.runtime import load_handler

    reset_caches()
    clock = OffsetClock()
    esm = EventSourceMapping(
        handler=load_handler(mapping["function"]),
        on_crash=lambda: clock.advance(mapping["visibility_timeout"]),
        **{k: mapping[k] for k in ("queue", "function", "batch_size", "region", "fast_forward")},
    )
    default_jobs().clock = clock
    ready.release()
    cpu0 = time.process_time()
    error = None
    try:
        idle = IDLE_POLL_S[0]
        while not stop.is_set():
            if esm.poll() == 0:
                # Lambda's pollers long-poll; here an empty receive costs the moto server
                # CPU (it was 3.5 receives per item at 20 ms), so an idle instance waits,
                # longer the longer the queue stays empty (25 instances waiting out a
                # split at 0.25 s each were 100 receives a second).
                time.sleep(idle)
                idle = min(IDLE_POLL_S[1], idle * 2)
            else:
                idle = IDLE_POLL_S[0]
    except BaseException as e:  # reported to the driver, not lost in a child
        error = f"{type(e).__name__}: {e}"
    results.put(
        {
            "index": index,
            "invocations": esm.invocations,
            "crashes": esm.crashes,
            "cpu_s": time.process_time() - cpu0,
            "error": error,
        }
    )


class WorkerProcesses:
    """``workers`` processes polling the item queue of ``local`` (a ``LocalBatches``
    whose environment points at a ``MotoServer``), standing for the Lambda instances
    ``MaximumConcurrency`` allows. Each process paces its own calls (BatchVendorRates),
    as each Lambda instance does."""

    def __init__(self, local: Any, workers: int) -> None:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: a new Lambda instance
        self.stop_event = ctx.Event()
        self.ready = ctx.Semaphore(0)
        self.results = ctx.Queue()
        worker = local.worker
        mapping = {
            "queue": worker.queue,
            "function": worker.function,
            "batch_size": worker.batch_size,
            "region": worker.region,
            "fast_forward": worker.fast_forward,
            "visibility_timeout": max(q.visibility_timeout for q in local.queues.values()),
        }
        self.procs = [
            ctx.Process(
                target=_worker,
                args=(dict(os.environ), mapping, self.ready, self.stop_event, self.results, i),
                name=f"worker-{i}",
                daemon=True,
            )
            for i in range(workers)
        ]
        self.stats: list[dict[str, Any]] = []

    def __enter__(self) -> WorkerProcesses:
        for p in self.procs:
            p.start()
        # Every instance has imported its handler before the batch starts: no cold starts in the figures.
        started, deadline = 0, time.monotonic() + 120
        while started < len(self.procs):
            if self.ready.acquire(timeout=0.5):
                started += 1
            elif time.monotonic() > deadline or not all(p.is_alive() for p in self.procs):
                self.stop_event.set()
                for p in self.procs:
                    p.terminate()
                raise RuntimeError("a worker process did not start")
        return self

    def check(self) -> None:
        """Raise if a worker process died (call it between the driver's polls)."""
        dead = [p.name for p in self.procs if not p.is_alive()]
        if dead and not self.stop_event.is_set():
            raise RuntimeError(f"worker process(es) exited: {', '.join(dead)}")

    def stop(self) -> list[dict[str, Any]]:
        self.stop_event.set()
        for _ in self.procs:
            try:
                self.stats.append(self.results.get(timeout=60))
            except Exception:
                break
        for p in self.procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        self.stats.sort(key=lambda s: s["index"])
        errors = [s["error"] for s in self.stats if s["error"]]
        if errors:
            raise RuntimeError(f"worker process failed: {errors[0]}")
        return self.stats

    def __exit__(self, *exc: object) -> None:
        if not self.stop_event.is_set():
            self.stop()
