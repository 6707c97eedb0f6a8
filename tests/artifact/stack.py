"""The emulated stack for the artifact test, in a process of its own: moto in server
mode on loopback, the template's resources created in it, and each function's resolved
environment printed as one JSON line. It serves until its standard input closes.

Run by tests/artifact/test_built_layers.py, never imported: the functions under test
run in clean interpreters that reach this server only through AWS_ENDPOINT_URL.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FACES = Path(os.environ.get("FACEGATE_SHARED", ROOT.parent / "shared")) / "testdata" / "faces"
# The manifest events/batch_splitter.json announces (tests/integration/batch/test_batch_events.py).
SAMPLE = (
    b'{"caller_id": "sample-1", "vendor": "shuxun", "image1": {"s3": {"key": "photos/obama.jpg"}}, '
    b'"image2": {"s3": {"key": "photos/obama2.jpg"}}}\n'
    b'{"caller_id": "sample-2", "vendor": "shuxun", "image1": {"s3": {"key": "photos/obama.jpg"}}, '
    b'"image2": {"url": "https://img.example/b.jpg"}}\n'
)


def main() -> None:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="artifact",
        AWS_SECRET_ACCESS_KEY="artifact",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    import boto3

    from facegate_local import aws
    from facegate_local.template import Resolver, Template, functions, resolve_environment

    template = Template.load(ROOT / "template.yaml")
    resolver = Resolver(template, parameters={"Stage": "dev"}, region="us-east-1")
    aws.create_resources(template, resolver, region="us-east-1")
    bucket = resolver.physical("BatchBucket")
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="batches/sample.jsonl", Body=SAMPLE)
    for name in ("obama.jpg", "obama2.jpg"):
        s3.put_object(Bucket=bucket, Key=f"photos/{name}", Body=(FACES / name).read_bytes())

    out = {}
    for logical, spec in functions(template, resolver).items():
        env, problems = resolve_environment(spec, resolver)
        props = template.resources[logical].get("Properties") or {}
        layers = props.get("Layers", (template.globals.get("Function") or {}).get("Layers", []))
        out[logical] = {
            "code_dir": str(spec.code_dir),
            "handler": spec.handler,
            "name": spec.name,
            "environment": env,
            "unresolved": sorted(problems),
            # Lambda adds a function's own Layers to the global ones.
            "layers": sorted(
                {*(_ref(x) for x in (template.globals.get("Function") or {}).get("Layers", []))}
                | {_ref(x) for x in layers}
            ),
        }
    print(json.dumps({"endpoint": endpoint, "functions": out}), flush=True)
    sys.stdin.read()  # serve until the test closes our stdin
    server.stop()


def _ref(value: object) -> str:
    return value["Ref"] if isinstance(value, dict) and "Ref" in value else str(value)


if __name__ == "__main__":
    main()
