"""The deployable artifacts, run the way Lambda runs them, without Docker.

Both layers are built by their own Makefiles, exactly as `sam build` builds them, but
for this machine's architecture (``LAMBDA_ARCH``) instead of arm64. Then every function's
handler is invoked with its sample event from events/ in a clean interpreter (``-I -S``:
no site-packages, no environment paths) that sees only what Lambda gives a function: its
own directory (/var/task), its layers' ``python/`` directories (/opt/python), the engine's
models (/opt/models), the standard library, and boto3 with its dependencies (the Lambda
runtime's own). AWS is moto in server mode on loopback (tests/artifact/stack.py), reached
through ``AWS_ENDPOINT_URL``; each function gets the template's environment for it.

What this proves: every module a handler imports, at cold start and on its sample
request, is in the layers that function declares; the layer Makefiles produce importable
packages from their pinned requirements; the template's environment is enough to run.
What only a deployment proves: the arm64 wheels themselves (the same pins, another
platform tag), IAM (tests/integration/iam), API Gateway's own behaviour, memory and
timeouts on the real runtime.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
pytestmark = [pytest.mark.artifact, pytest.mark.xdist_group("artifact")]

# The Lambda runtime ships boto3; the versions are the dev pins (requirements-dev.txt).
RUNTIME_PACKAGES = [
    line.strip()
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
    if line.startswith(("boto3==", "botocore==", "s3transfer=="))
]

PROBE = r"""
import importlib, json, os, sys
task, paths, event_file, name = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
sys.path[:0] = [task, *paths]  # /var/task first, then /opt/python, then the runtime's boto3

class Context:  # what Lambda passes as the context
    function_name = name
    memory_limit_in_mb = "1024"
    invoked_function_arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"
    aws_request_id = "00000000-0000-4000-8000-000000000000"
    def get_remaining_time_in_millis(self):
        return 25_000

module, function = os.environ["HANDLER"].rsplit(".", 1)
handler = getattr(importlib.import_module(module), function)
result = handler(json.loads(open(event_file, encoding="utf-8").read()), Context())
allowed = (task, *paths, sys.base_prefix)
outside = sorted(
    m for m, mod in list(sys.modules.items())
    if getattr(mod, "__file__", None) and not os.path.realpath(mod.__file__).startswith(allowed)
)
print("RESULT " + json.dumps({"result": result, "outside": outside}))
"""


def _run(cmd: list[str], **kw) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # noqa: S603 - our own commands
    assert done.returncode == 0, f"{' '.join(cmd[:4])}… failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def opt(tmp_path_factory) -> dict[str, Path]:
    """The two layers built by their Makefiles for this machine, and the runtime's boto3."""
    base = tmp_path_factory.mktemp("artifacts")
    arch = platform.machine()
    built = {}
    for layer, target in (("facegate", "build-FacegateLayer"), ("engine", "build-EngineLayer")):
        src = base / "src" / layer  # sam builds in a scratch copy of the layer's directory
        shutil.copytree(ROOT / "layers" / layer, src, ignore=shutil.ignore_patterns("__pycache__"))
        out = base / "opt" / layer
        _run(
            [
                "make",
                "-s",
                "-C",
                str(src),
                target,
                f"ARTIFACTS_DIR={out}",
                f"LAMBDA_ARCH={arch}",
                f"PYTHON={sys.executable}",
            ]
        )
        built[layer] = out
    runtime = base / "runtime"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(runtime),
            *RUNTIME_PACKAGES,
        ]
    )
    built["runtime"] = runtime
    return built


@pytest.fixture(scope="module")
def stack():
    proc = subprocess.Popen(  # noqa: S603 - our own script
        [sys.executable, str(Path(__file__).with_name("stack.py"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, "the emulated stack did not start"
        yield json.loads(line)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def invoke(fn: dict, opt: dict[str, Path], endpoint: str, event: Path) -> dict:
    layers = {"FacegateLayer": opt["facegate"], "EngineLayer": opt["engine"]}
    paths = [str(layers[name] / "python") for name in fn["layers"]] + [str(opt["runtime"])]
    env = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        **fn["environment"],
        "HANDLER": fn["handler"],
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "artifact",
        "AWS_SECRET_ACCESS_KEY": "artifact",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_LAMBDA_FUNCTION_NAME": fn["name"],
        # Tracing stays imported (the Tracer is built at import) but sends nothing here.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    if "EngineLayer" in fn["layers"]:
        env["FACEGATE_MODELS_DIR"] = str(opt["engine"] / "models")  # /opt/models on Lambda
    done = subprocess.run(  # noqa: S603 - the base interpreter, isolated
        [sys._base_executable, "-I", "-S", "-c", PROBE, fn["code_dir"], json.dumps(paths), str(event), fn["name"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"{fn['name']} failed:\n{done.stderr[-4000:]}"
    return json.loads(lines[-1].removeprefix("RESULT "))


API_EXPECTED = {
    # the built-in engine answers from the engine layer
    "compare": {200},
    "detect": {200},
    "features": {200},
    # no vendor credentials in this stack: the contract's 503, not a crash
    "verify_identity": {200, 503},
    "results": {404},  # the samples' request id was never logged here (GET and DELETE alike)
    "vendors": {200},
    "usage": {200},  # the sample's days, counted or not
    "openapi": {200},  # the spec the function ships beside its handler
    "batches": {200},  # run last: the batch functions before it made the sample's batch
}


def samples() -> dict[str, list[str]]:
    """Each function's sample events: ``events/<function>.json`` and ``events/<function>_<case>.json``."""
    found: dict[str, list[str]] = {}
    for path in sorted(EVENTS.glob("*.json")):
        function = next(
            (
                d.name
                for d in (ROOT / "functions").iterdir()
                if path.stem in (d.name,) or path.stem.startswith(d.name + "_")
            ),
            None,
        )
        assert function is not None, f"{path.name} is the sample of no function"
        found.setdefault(function, []).append(path.stem)
    return found


def test_every_function_runs_from_its_built_layers_alone(opt, stack):
    functions = stack["functions"]
    names = {Path(fn["code_dir"]).name: fn for fn in functions.values()}
    events = samples()
    assert set(names) == set(events), "every function has a sample event"
    # A batch in its own order (split, work, drain, progress), then the API functions.
    order = ["batch_splitter", "batch_worker", "batch_dlq", "batches"]
    for name in order + sorted(set(names) - set(order)):
        fn = names[name]
        assert not fn["unresolved"], f"{name}: environment not resolvable: {fn['unresolved']}"
        for sample in events[name]:
            out = invoke(fn, opt, stack["endpoint"], EVENTS / f"{sample}.json")
            assert out["outside"] == [], f"{sample} imported modules from outside its layers: {out['outside']}"
            result = out["result"]
            if name in API_EXPECTED:
                body = json.loads(result["body"]) if result.get("body") else {}
                assert result["statusCode"] in API_EXPECTED[name], f"{sample}: {result['statusCode']} {body}"
                assert (body.get("error") or {}).get("code") != "INTERNAL_ERROR"
            else:  # SQS-triggered: the partial-batch response, with nothing failed
                assert result == {"batchItemFailures": []}, f"{sample}: {result}"


def test_a_handler_that_imports_what_its_layers_lack_fails_here(opt, stack, tmp_path):
    """The check has teeth: the results function (no engine layer) importing numpy fails."""
    fn = dict(next(f for f in stack["functions"].values() if Path(f["code_dir"]).name == "results"))
    task = tmp_path / "results"
    shutil.copytree(fn["code_dir"], task)
    (task / "app.py").write_text("import numpy  # not in the facegate layer\n" + (task / "app.py").read_text())
    fn["code_dir"] = str(task)
    with pytest.raises(AssertionError, match="No module named 'numpy'"):
        invoke(fn, opt, stack["endpoint"], EVENTS / "results.json")


BLAS_PROBE = r"""
import json, sys
sys.path[:0] = json.loads(sys.argv[1])  # /opt/python of both layers, nothing else
from threadpoolctl import threadpool_info, threadpool_limits
import numpy
threadpool_limits(limits=2, user_api="blas")  # so one thread is the engine's doing on any machine
from facegate import engine, engine_net
engine.models()
blas = [(i["filepath"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
print("RESULT " + json.dumps({"returned": engine_net.use_one_blas_thread(), "blas": blas}))
"""


def test_the_engine_runs_blas_on_one_thread_from_its_layers(opt):
    """threadpoolctl ships in the engine layer and finds the OpenBLAS of the layer's numpy."""
    paths = [str(opt["facegate"] / "python"), str(opt["engine"] / "python")]
    done = subprocess.run(  # noqa: S603 - the base interpreter, isolated
        [sys._base_executable, "-I", "-S", "-c", BLAS_PROBE, json.dumps(paths)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "FACEGATE_MODELS_DIR": str(opt["engine"] / "models")},
        timeout=120,
        check=False,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    out = json.loads(lines[-1].removeprefix("RESULT "))
    assert out["returned"] == [1]
    [(filepath, threads)] = out["blas"]
    assert filepath.startswith(str(opt["engine"] / "python")) and threads == 1
