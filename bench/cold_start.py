"""Cold start of each handler: a fresh interpreter imports functions/<op>/app.py, as a
new Lambda container does before its first invocation: in Lambda with tracing on (as
deployed), and with tracing off.

Reported as a ratio to the floor every handler stands on, measured in the same run: a
fresh interpreter importing Powertools' event handler alone. The machine is shared, so
absolute milliseconds drift from run to run; the ratio of medians does much less, and the
ratio of CPU time (``time.process_time``: what the import itself computed, without the
time other processes held the core) less again.
Also lists which heavy modules the import pulled in (they should load only when used)
and the largest self-times of `python -X importtime` for the compare handler.

Then, per scenario, **import + first request** of the compare handler in a fresh
interpreter: what a caller of a cold container waits for. Work moved from the import to
the first request (boto3, requests, the X-Ray patches, pydantic building the models the
request uses) shows there, not as a saving. The first request is a real compare: Shuxun
played by its sandbox (facegate_local.sandboxes, on a thread of this process), Secrets
Manager and the results log's DynamoDB table in moto's server (a process of its own,
reached over HTTP as boto3 reaches AWS: nothing of moto is imported by the measured
interpreter). Traced, the invocation carries a sampled ``_X_AMZN_TRACE_ID``, as Lambda
sets it, so the X-Ray SDK records and emits (UDP to the default daemon address, where
nothing listens) the handler's, DynamoDB's, Secrets Manager's and the vendor's subsegments.

Run: .venv/bin/python bench/cold_start.py [runs] [--against TREE]

``--against TREE`` (e.g. a ``git archive`` of the commit before a change, extracted) also
measures that tree's compare handler, import and import + first request, in the same
interleaved loop: on a shared machine the honest before/after.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("FACEGATE_SHARED", ROOT.parent / "shared")) / "testdata" / "faces"
RUNS = 9
OPS = ("compare", "detect", "features", "verify_identity", "results", "usage", "vendors")
HEAVY = ("dlib", "numpy", "PIL", "requests", "boto3", "botocore.session", "cryptography", "gmssl", "aws_xray_sdk.core")
# This tree's facegate, whatever the venv's editable install points at.
BASE_ENV = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "PATH": "/usr/bin:/bin",
    "PYTHONPATH": str(ROOT / "layers" / "facegate"),
    "PYDANTIC_DISABLE_PLUGINS": "__all__",  # as template.yaml's Globals set for every function
}
SCENARIOS = {
    # A deployed function (template.yaml: Tracing: Active): Powertools traces only in Lambda.
    "in Lambda, tracing on": {"LAMBDA_TASK_ROOT": str(ROOT), "POWERTOOLS_TRACE_DISABLED": "false"},
    "tracing off (local, or POWERTOOLS_TRACE_DISABLED=true)": {"POWERTOOLS_TRACE_DISABLED": "true"},
}

PROBE = """
import importlib.util, json, sys, time
t, cpu = time.perf_counter(), time.process_time()
if sys.argv[1] == "-":
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver
else:
    spec = importlib.util.spec_from_file_location("fn", sys.argv[1])
    m = importlib.util.module_from_spec(spec); sys.modules["fn"] = m; spec.loader.exec_module(m)
ms, cpu_ms = (time.perf_counter() - t) * 1000, (time.process_time() - cpu) * 1000
print(json.dumps({"ms": ms, "cpu": cpu_ms, "heavy": [h for h in HEAVY if h in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


# A fresh interpreter imports the handler, then invokes it once with the event in argv[2].
FIRST_REQUEST_PROBE = """
import importlib.util, json, sys, time
event = json.loads(open(sys.argv[2]).read())

class Context:
    function_name = "compare"; memory_limit_in_mb = 1769; aws_request_id = "bench-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:compare"
    def get_remaining_time_in_millis(self): return 29_000

t, cpu = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location("fn", sys.argv[1])
m = importlib.util.module_from_spec(spec); sys.modules["fn"] = m; spec.loader.exec_module(m)
t1, cpu1 = time.perf_counter(), time.process_time()
response = m.lambda_handler(event, Context())
t2, cpu2 = time.perf_counter(), time.process_time()
print(json.dumps({"import": (t1 - t) * 1000, "first": (t2 - t1) * 1000, "import_cpu": (cpu1 - cpu) * 1000,
                  "first_cpu": (cpu2 - cpu1) * 1000, "status": response["statusCode"], "body": response["body"][:300],
                  "heavy": [h for h in HEAVY if h in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))
# What Lambda sets for a sampled invocation (X-Ray's documented header format).
TRACE_ID = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@contextlib.contextmanager
def first_request_stage() -> Iterator[tuple[dict[str, str], str]]:
    """moto's server with the results table and Shuxun's secret, the Shuxun sandbox, and a
    compare event of obama.jpg + obama2.jpg: (the function's environment, the event's file)."""
    sys.path[:0] = [str(ROOT / "layers" / "facegate"), str(ROOT)]
    import boto3

    from facegate_local.batch_processes import MotoServer
    from facegate_local.lambda_runtime import api_event
    from facegate_local.sandboxes.shuxun import ShuxunSandbox

    server, sandbox = MotoServer(), ShuxunSandbox().start()
    try:
        aws = server.environment() | {"AWS_DEFAULT_REGION": "us-east-1"}
        with contextlib.ExitStack() as restore:  # boto3 here reads the same variables
            for key, value in aws.items():
                restore.enter_context(_env(key, value))
            boto3.client("dynamodb").create_table(
                TableName="bench-results",
                BillingMode="PAY_PER_REQUEST",
                KeySchema=[{"AttributeName": "request_id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "request_id", "AttributeType": "S"}],
            )
            secret = {**sandbox.default_credentials(), "endpoint": sandbox.url}
            boto3.client("secretsmanager").create_secret(
                Name="facegate/bench/vendors/shuxun", SecretString=json.dumps(secret)
            )
        body = {
            f"image{i}": {"base64": base64.b64encode((FACES / name).read_bytes()).decode()}
            for i, name in ((1, "obama.jpg"), (2, "obama2.jpg"))
        }
        event = api_event(
            "POST",
            "/v1/compare",
            json.dumps({"vendor": "shuxun", **body}),
            headers={"Content-Type": "application/json", "x-api-key": "bench-key"},
            api_key="bench-key",
        )
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(event, f)
        env = aws | {
            "FACEGATE_STAGE": "bench",
            "FACEGATE_RESULTS_TABLE": "bench-results",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "ERROR"),
        }
        try:
            yield env, f.name
        finally:
            os.unlink(f.name)
    finally:
        sandbox.stop()
        server.stop()


@contextlib.contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


def first_request(tree: Path, env: dict[str, str], event_file: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST_PROBE, str(tree / "functions" / "compare" / "app.py"), event_file],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["status"] != 200:
        raise RuntimeError(f"the first compare failed: {result['status']} {result['body']}")
    return result


def probe(target: str, env: dict[str, str], extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *extra, "-c", PROBE, target], capture_output=True, text=True, env=env, check=True
    )


def top_self_times(target: str, env: dict[str, str], n: int = 12) -> list[tuple[int, int, str]]:
    """(self µs, cumulative µs, module) of the largest self-times, from one -X importtime run."""
    rows = []
    for line in probe(target, env, ("-X", "importtime")).stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = (part.strip() for part in line.removeprefix("import time:").split("|"))
        rows.append((int(self_us), int(cum_us), name.strip()))
    return sorted(rows, reverse=True)[:n]


def main() -> None:
    args = sys.argv[1:]
    against = Path(args.pop(args.index("--against") + 1)).resolve() if "--against" in args else None
    args = [a for a in args if a != "--against"]
    runs = int(args[0]) if args else RUNS
    # name -> (handler file, or "-" for the floor; the tree whose facegate it imports)
    targets = {"event handler alone": ("-", ROOT)} | {op: (str(ROOT / "functions" / op / "app.py"), ROOT) for op in OPS}
    trees = {"": ROOT}
    if against is not None:  # the same handler of another tree, measured in the same interleaved loop
        targets["before: compare"] = (str(against / "functions" / "compare" / "app.py"), against)
        trees["before: "] = against
    with first_request_stage() as (stage_env, event_file):
        for scenario, scenario_env in SCENARIOS.items():
            env = BASE_ENV | scenario_env

            def env_of(tree: Path, env: dict[str, str] = env) -> dict[str, str]:
                return env | {"PYTHONPATH": str(tree / "layers" / "facegate")}

            first_env = stage_env | ({"_X_AMZN_TRACE_ID": TRACE_ID} if "LAMBDA_TASK_ROOT" in scenario_env else {})
            samples: dict[str, list[float]] = {name: [] for name in targets}
            cpu: dict[str, list[float]] = {name: [] for name in targets}
            heavy: dict[str, list[str]] = {}
            first: dict[str, list[dict]] = {prefix: [] for prefix in trees}
            for _ in range(runs):  # interleaved, so a burst of load on the machine hits every target alike
                for name, (target, tree) in targets.items():
                    result = json.loads(probe(target, env_of(tree)).stdout.strip().splitlines()[-1])
                    samples[name].append(result["ms"])
                    cpu[name].append(result["cpu"])
                    heavy[name] = result["heavy"]
                for prefix, tree in trees.items():
                    first[prefix].append(first_request(tree, env_of(tree) | first_env, event_file))
            floor = statistics.median(samples["event handler alone"])
            cpu_floor = statistics.median(cpu["event handler alone"])
            print(f"{scenario}: median import time of {runs} fresh interpreters each")
            print(f"{'target':24} {'median ms':>9} {'ratio':>6} {'CPU ms':>7} {'ratio':>6}  heavy modules loaded")
            for name in targets:
                ms, cpu_ms = statistics.median(samples[name]), statistics.median(cpu[name])
                print(
                    f"{name:24} {ms:9.0f} {ms / floor:5.2f}x {cpu_ms:7.0f} {cpu_ms / cpu_floor:5.2f}x  "
                    f"{', '.join(heavy[name]) or '-'}"
                )
            print(
                f"\ncompare handler ({scenario}), import + first request (a Shuxun compare), ratio to the same floor:"
            )
            print(f"{'':24} {'median ms':>9} {'ratio':>6} {'CPU ms':>7} {'ratio':>6}")
            for prefix, rows in first.items():
                for label, keys in (
                    ("import", ("import",)),
                    ("first request", ("first",)),
                    ("import + first", ("import", "first")),
                ):
                    ms = statistics.median(sum(r[k] for k in keys) for r in rows)
                    cpu_ms = statistics.median(sum(r[k + "_cpu"] for k in keys) for r in rows)
                    print(f"{prefix + label:24} {ms:9.0f} {ms / floor:5.2f}x {cpu_ms:7.0f} {cpu_ms / cpu_floor:5.2f}x")
                print(f"{prefix}heavy modules loaded after the first request: {', '.join(rows[-1]['heavy'])}")
            print(f"\ncompare handler ({scenario}), -X importtime, largest self-times (one run):")
            print(f"{'self ms':>8} {'cumul ms':>8}  module")
            for self_us, cum_us, name in top_self_times(targets["compare"][0], env):
                print(f"{self_us / 1000:8.1f} {cum_us / 1000:8.1f}  {name}")
            print()


if __name__ == "__main__":
    main()
