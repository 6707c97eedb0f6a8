"""Everything ``make run`` does before serving (see ``facegate_local.server``): AWS
isolated and emulated in moto, the template's resources created, the vendor
sandboxes started, the functions' environments merged and applied, and every
handler imported."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from facegate_local import aws
from facegate_local.gateway import LoadedFunction, LocalApi, api_keys
from facegate_local.template import (
    FunctionSpec,
    Resolver,
    Template,
    Unresolvable,
    api_stage,
    functions,
    gateway_responses,
    resolve_environment,
    routes,
)

ROOT = Path(__file__).resolve().parents[1]
LAMBDA_LAYER_ROOT = "/opt/"

# Beat the template, lose to the shell: a laptop has no X-Ray daemon and no use for
# metrics on stdout, and `make run` answers with the built-in engine by default.
LOCAL_OVERRIDES = {
    "FACEGATE_DEFAULT_VENDOR": "local",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
# Only when neither the template nor the shell says.
LOCAL_FALLBACKS = {
    "POWERTOOLS_SERVICE_NAME": "facegate",
    "POWERTOOLS_METRICS_NAMESPACE": "Facegate",
}


class StartupError(Exception):
    """Why the server cannot start, written for the person who ran ``make run``."""


def read_credentials(path: str) -> dict[str, dict[str, Any]]:
    """The FACEGATE_CREDENTIALS file. Errors name the file and the vendor, never a value."""
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StartupError(f"FACEGATE_CREDENTIALS names {p}, which does not exist") from None
    except (OSError, ValueError) as e:
        raise StartupError(f"FACEGATE_CREDENTIALS file {p} is not readable JSON ({type(e).__name__})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise StartupError(f'FACEGATE_CREDENTIALS file {p} must be {{"<vendor id>": {{...}}, ...}}')
    return data


def load_handler(spec: FunctionSpec) -> Callable[[dict, Any], Any]:
    """Import the function's handler file under a name unique to the function, the
    way a Lambda container imports it: once, before the first invocation."""
    path = spec.handler_file
    if not path.is_file():
        raise StartupError(f"{spec.logical_id}: handler file {path} does not exist")
    module_name = "facegate_fn_" + re.sub(r"\W", "_", spec.code_dir.name)
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise StartupError(f"{spec.logical_id}: cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running, like any import: pydantic and dataclasses look
    # their module up in sys.modules to resolve annotations.
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    handler = getattr(module, spec.handler_attribute, None)
    if not callable(handler):
        raise StartupError(f"{spec.logical_id}: {path} has no function {spec.handler_attribute}")
    return handler


def merged_environment(
    specs: Mapping[str, FunctionSpec], resolver: Resolver, wanted: set[str]
) -> tuple[dict[str, str], list[str]]:
    """The union of the functions' environments, and what to tell the developer
    about it: variables that cannot be resolved locally (dropped), paths into
    Lambda's layer mount that do not exist here (dropped: the layers' packages are
    in the venv), and variables two functions set differently (the first
    function's value is kept: they share a process)."""
    env: dict[str, str] = {}
    owner: dict[str, str] = {}
    notes = []
    layer_paths: dict[tuple[str, str], list[str]] = {}
    for logical in sorted(wanted):
        values, problems = resolve_environment(specs[logical], resolver)
        for name, why in problems.items():
            notes.append(f"warning: {logical}: environment variable {name} dropped: {why}")
        for name, value in values.items():
            if value.startswith(LAMBDA_LAYER_ROOT) and not Path(value).exists():
                layer_paths.setdefault((name, value), []).append(logical)
                continue
            if name in env and env[name] != value:
                notes.append(
                    f"warning: {name} differs between {owner[name]} and {logical}; functions share one "
                    f"process locally, so {owner[name]}'s value is used"
                )
                continue
            env.setdefault(name, value)
            owner.setdefault(name, logical)
    for (name, value), users in layer_paths.items():
        notes.append(
            f"note: {name}={value} ({', '.join(users)}) not set: {LAMBDA_LAYER_ROOT} is Lambda's layer "
            "mount; locally the layers' packages come from the venv"
        )
    return env, notes


@dataclass
class Runtime:
    api: LocalApi
    mock: Any
    sandboxes: dict[str, Any]
    stage: str

    def close(self) -> None:
        for sandbox in self.sandboxes.values():
            sandbox.stop()
        self.mock.stop()


def start_sandboxes(skip: set[str], log: TextIO) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Every vendor sandbox not covered by real credentials, on loopback, with the
    credentials it accepts plus its endpoint. Called on the instance, so a sandbox
    that makes its keys per instance (zoloz's RSA pairs) hands out its own."""
    from facegate_local.sandboxes import SANDBOXES, sandbox_class

    started = {}
    for vendor in SANDBOXES:
        if vendor in skip:
            print(f"sandbox {vendor}: not started, FACEGATE_CREDENTIALS configures {vendor}", file=log)
            continue
        try:
            sandbox = sandbox_class(vendor)().start()
        except (ImportError, AttributeError) as e:
            print(f"warning: sandbox {vendor} unavailable ({type(e).__name__}: {e})", file=log)
            continue
        credentials = {**sandbox.default_credentials(), "endpoint": sandbox.url}
        host_port = sandbox.url.split("://", 1)[1]
        # No scheme on purpose: the only line with http://127.0.0.1:<port> is the ready line.
        print(f"sandbox {vendor} listening on {host_port}", file=log)
        started[vendor] = (sandbox, credentials)
    log.flush()
    return started


def build_runtime(
    environ: MutableMapping[str, str] = os.environ,
    *,
    template_path: str | Path | None = None,
    log: TextIO = sys.stderr,
) -> Runtime:
    """Everything before serving: AWS isolated and emulated, resources created from
    the template, the functions' environment applied, every handler imported."""
    original = dict(environ)
    region = aws.isolate_environment(environ)
    path = Path(template_path or environ.get("FACEGATE_TEMPLATE") or ROOT / "template.yaml")
    if not path.is_file():
        raise StartupError(f"no SAM template at {path}")
    try:
        template = Template.load(path)
        stage = original.get("FACEGATE_STAGE") or template.parameter_default("Stage") or "dev"
        resolver = Resolver(template, parameters={"Stage": stage}, region=region)
        specs = functions(template, resolver)
        api_routes = routes(template, resolver)
    except (yaml.YAMLError, ValueError, KeyError, Unresolvable) as e:
        raise StartupError(f"{path} cannot be served locally: {type(e).__name__}: {e}") from None
    if not api_routes:
        raise StartupError(f"{path} declares no function with an Api event: nothing to serve")

    credentials = read_credentials(original["FACEGATE_CREDENTIALS"]) if original.get("FACEGATE_CREDENTIALS") else {}
    mock = aws.start()
    sandboxes: dict[str, Any] = {}
    try:
        if original.get("FACEGATE_SANDBOXES", "").lower() in ("1", "true", "yes"):
            for vendor, (sandbox, creds) in start_sandboxes(set(credentials), log).items():
                sandboxes[vendor] = sandbox
                credentials.setdefault(vendor, creds)
            environ["FACEGATE_ALLOW_HTTP_URLS"] = "true"  # sandboxes speak plain http on loopback
        # The secret names the functions compute from FACEGATE_STAGE (the contract's).
        secret_values = {f"facegate/{stage}/vendors/{v}": json.dumps(c) for v, c in credentials.items()}
        try:
            created = aws.create_resources(template, resolver, region=region, secret_values=secret_values)
        except Unresolvable as e:
            raise StartupError(str(e)) from None
        made = {c.attributes.get("Name") for c in created if c.type == "AWS::SecretsManager::Secret"}
        for name in sorted(set(secret_values) - made):
            print(f"warning: credentials for {name} not loaded: the template defines no such secret", file=log)

        wanted = {r.function for r in api_routes}
        env, notes = merged_environment(specs, resolver, wanted)
        for note in notes:
            print(note, file=log)
        for name, value in {**env, **LOCAL_OVERRIDES, "FACEGATE_STAGE": stage}.items():
            if name not in original:
                environ[name] = value
        for name, value in LOCAL_FALLBACKS.items():
            environ.setdefault(name, value)
        log.flush()

        loaded = {logical: LoadedFunction(specs[logical], load_handler(specs[logical])) for logical in sorted(wanted)}
        stages = {r.api: api_stage(template, resolver, r.api) for r in api_routes}
        # One set of gateway responses: the API the routes belong to (there is one).
        responses = gateway_responses(template, resolver, next((r.api for r in api_routes if r.api), None))
        api = LocalApi(
            routes=api_routes,
            functions=loaded,
            api_keys=api_keys(original),
            stages=stages,
            gateway_responses=responses,
            region=region,
            account_id=resolver.account_id,
            log=log,
        )
    except BaseException:
        for sandbox in sandboxes.values():
            sandbox.stop()
        mock.stop()
        raise
    return Runtime(api, mock, sandboxes, stage)
