"""The `make run` server as a subprocess: started on a free port, used over HTTP,
stopped with SIGTERM (which must end it cleanly)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"http://127\.0\.0\.1:(\d+)")
# Cold start: imports, moto, the template's resources. Generous, because a loaded CI
# machine is slow; it bounds a hang, it does not measure anything.
STARTUP_LIMIT_S = 120
API_KEY = "e2e-key"
OTHER_API_KEY = "e2e-key-b"  # FACEGATE_API_KEYS: a second tenant
# Credentials for one commercial vendor, so /v1/vendors has something configured.
CREDENTIALS = {"shuxun": {"app_key": "e2e-app-key", "app_secret": "e2e-app-secret"}}


@dataclass
class LocalServer:
    process: subprocess.Popen
    base_url: str
    api_key: str
    stderr_path: Path
    stdout_lines: list[str] = field(default_factory=list)

    def session(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False  # no proxies from the environment between us and loopback
        return s

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def _server_env(overrides: Mapping[str, str]) -> dict[str, str]:
    # The developer's own FACEGATE_* settings must not change what the tests see.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGATE_") and k != "PORT"}
    env.update({"PORT": "0", "PYTHONUNBUFFERED": "1", **overrides})
    return env


def start_local_server(tmp: Path, **overrides: str) -> LocalServer:
    """Start ``python -m facegate_local.server`` (what `make run` runs) and wait
    for its ready line; the port is the one the line names."""
    stderr_path = tmp / "server.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "facegate_local.server"],
            cwd=ROOT,
            env=_server_env(overrides),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []

    def pump() -> None:  # keeps reading so the server never blocks on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line.rstrip("\n"))
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        line = lines.get(timeout=STARTUP_LIMIT_S)
    except queue.Empty:
        line = None
    match = READY.search(line or "")
    if match is None:
        process.kill()
        process.wait(timeout=10)
        pytest.fail(f"the server did not get ready; stdout {seen!r}; stderr:\n{stderr_path.read_text()[-4000:]}")
    return LocalServer(process, match.group(0), overrides.get("FACEGATE_API_KEY", "local-dev-key"), stderr_path, seen)


def stop_local_server(server: LocalServer) -> int:
    """SIGTERM, as a terminal's Ctrl-C or a process manager would; returns the exit code."""
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
        raise


@pytest.fixture(scope="session")
def local_server(tmp_path_factory) -> Iterator[LocalServer]:
    tmp = tmp_path_factory.mktemp("local-server")
    credentials = tmp / "credentials.json"
    credentials.write_text(json.dumps(CREDENTIALS))
    server = start_local_server(
        tmp, FACEGATE_CREDENTIALS=str(credentials), FACEGATE_API_KEY=API_KEY, FACEGATE_API_KEYS=OTHER_API_KEY
    )
    yield server
    code = stop_local_server(server)
    assert code == 0, f"the server did not stop cleanly on SIGTERM (exit {code}):\n{server.stderr()[-4000:]}"


@pytest.fixture
def api(local_server) -> Iterator[requests.Session]:
    """A session that sends the server's API key."""
    with local_server.session() as s:
        s.headers["x-api-key"] = local_server.api_key
        yield s


@pytest.fixture
def other_api(local_server) -> Iterator[requests.Session]:
    """A session with the server's second key: another tenant."""
    with local_server.session() as s:
        s.headers["x-api-key"] = OTHER_API_KEY
        yield s


@pytest.fixture(scope="module")
def local_server_factory(tmp_path_factory):
    """start(**env) -> LocalServer, for a server with other settings than
    ``local_server``'s; each is stopped (and must stop cleanly) after the module."""
    started: list[LocalServer] = []

    def start(**overrides: str) -> LocalServer:
        server = start_local_server(tmp_path_factory.mktemp("local-server"), **overrides)
        started.append(server)
        return server

    yield start
    for server in started:
        code = stop_local_server(server)
        assert code == 0, f"the server did not stop cleanly on SIGTERM (exit {code}):\n{server.stderr()[-4000:]}"
