"""``make run``: the facegate API on http://127.0.0.1:3000, with no AWS account.

Each HTTP request becomes an API Gateway REST proxy event and is handed, in this
process, to the same ``lambda_handler`` that Lambda runs. Routes, function
environments, timeouts and the DynamoDB table and secrets all come from
template.yaml, so the local API cannot drift from the deployed one. AWS is moto,
in-process; see ``facegate_local.aws``.

Environment (all optional):

- ``PORT``: the port on 127.0.0.1 (default 3000; 0 takes any free port, and the
  ready line names it).
- ``FACEGATE_API_KEY``: the key every route wants in ``x-api-key``
  (default ``local-dev-key``).
- ``FACEGATE_API_KEYS``: more keys, comma-separated, accepted beside it. Each key
  is its own tenant: its requests carry its own ``apiKeyId`` (``local_key_id``),
  as API Gateway gives each API key an id of its own.
- ``FACEGATE_CREDENTIALS``: a JSON file ``{"<vendor id>": {...secret fields...}}``
  whose entries become the vendors' emulated secrets.
- ``FACEGATE_SANDBOXES=1``: start the vendor sandboxes (``facegate_local.sandboxes``)
  on loopback and point every vendor that FACEGATE_CREDENTIALS leaves out at its
  sandbox; plain-http vendor endpoints are allowed in this mode.
- ``FACEGATE_STAGE``: the stage, hence the secret names
  ``facegate/<stage>/vendors/<id>`` (default: the template's Stage default).
- ``FACEGATE_TEMPLATE``: the SAM template to serve (default: template.yaml at the
  repository root).

Every other variable the template sets for the functions can be overridden from
the shell (``FACEGATE_DEFAULT_VENDOR=shuxun make run``): the shell beats the local
defaults below, which beat the template.

Errors the gateway answers itself (a missing or wrong ``x-api-key``: 403; an
unknown route; a body over API Gateway's 10 MB limit: 413; a function that fails:
502) are rendered from the template's ``GatewayResponses``, so they read as the
deployed API's do; without one, the contract's error shape (``FORBIDDEN``,
``NOT_FOUND``, ``IMAGE_TOO_LARGE``, ``INTERNAL_ERROR``). Their ``request_id`` is
the gateway's request id, as in AWS (and so is their ``X-Request-Id``, mapped by each
gateway response's ``ResponseParameters``): no function ran, so nothing was logged.

Where this differs from API Gateway, on purpose:

* a known path with the wrong method answers 405 ``METHOD_NOT_ALLOWED`` with an
  ``Allow`` header (API Gateway answers it like an unknown route), and an unknown
  route is 404 unless the template sets another status (API Gateway: 403);
* a chunked request body (no Content-Length) answers 411; a Content-Length that
  is not one plain decimal, or a body shorter than it, 400;
* a request http.server cannot read (request line, URI over 64 KiB, headers over
  64 KiB or 100 of them, HTTP/2) answers its 4xx in the contract's shape, and any
  method reaches routing (405 or 404), never http.server's HTML 501;
* all functions share one process, so they share one environment (the union of
  their variables; a conflict is reported at startup) and invocations run one at a
  time: handlers and Powertools keep per-invocation state in module globals, as a
  Lambda container runs one request at a time;
* a function's ``Timeout`` is reported through the context but not enforced; a run
  past it is logged as a warning.

The parts: ``facegate_local.gateway`` (API Gateway: routes, API keys, its own
errors, proxy events and replies), ``facegate_local.httpd`` (the HTTP server:
reading requests, Content-Length rules, limits) and ``facegate_local.runtime``
(moto, the template's resources, sandboxes, environments, handlers); this module
starts them (``main``).

Output: exactly one line on stdout, once serving, containing
``http://127.0.0.1:<port>``. Everything else (sandboxes, warnings, one access log
line per request: method, path, status, milliseconds; never bodies or query
strings) goes to stderr.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any

# What ``make run`` is made of; names other code imported from here before the split
# are re-exported (new code imports them from their own modules).
from facegate_local.gateway import (
    DEFAULT_API_KEY,
    HOST,
    MAX_BODY_BYTES,
    LoadedFunction,
    LocalApi,
    Reply,
    api_gateway_event,
    api_keys,
    builtin_error_body,
    local_key_id,
    proxy_reply,
    render_gateway_template,
)
from facegate_local.httpd import BODY_TIMEOUT_S, LocalHTTPServer, make_http_server
from facegate_local.runtime import (
    LOCAL_FALLBACKS,
    LOCAL_OVERRIDES,
    Runtime,
    StartupError,
    build_runtime,
    load_handler,
    merged_environment,
    read_credentials,
    start_sandboxes,
)

__all__ = [
    "BODY_TIMEOUT_S",
    "DEFAULT_API_KEY",
    "DEFAULT_PORT",
    "HOST",
    "LOCAL_FALLBACKS",
    "LOCAL_OVERRIDES",
    "MAX_BODY_BYTES",
    "LoadedFunction",
    "LocalApi",
    "LocalHTTPServer",
    "Reply",
    "Runtime",
    "StartupError",
    "api_gateway_event",
    "api_keys",
    "build_runtime",
    "builtin_error_body",
    "load_handler",
    "local_key_id",
    "main",
    "make_http_server",
    "merged_environment",
    "proxy_reply",
    "read_credentials",
    "render_gateway_template",
    "start_sandboxes",
]

DEFAULT_PORT = 3000


def _port(environ: Mapping[str, str]) -> int:
    raw = environ.get("PORT") or str(DEFAULT_PORT)
    try:
        port = int(raw)
        if not 0 <= port <= 65535:
            raise ValueError
    except ValueError:
        raise StartupError(f"PORT must be a port number, got {raw!r}") from None
    return port


def main(environ: MutableMapping[str, str] = os.environ) -> int:
    try:
        port = _port(environ)
        # Bound first: a taken port fails in a moment, not after every handler is imported.
        try:
            httpd = make_http_server(None, port)
        except OSError as e:
            raise StartupError(f"cannot listen on {HOST}:{port} ({e.strerror}); set PORT") from None
        try:
            runtime = build_runtime(environ)
        except BaseException:
            httpd.server_close()
            raise
    except StartupError as e:
        print(f"facegate: error: {e}", file=sys.stderr, flush=True)
        return 1
    httpd.api = runtime.api
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever() to return, and serve_forever() runs in
        # this (the main) thread: ask from another one.
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    key = "local-dev-key" if runtime.api.api_keys[0] == DEFAULT_API_KEY else "from FACEGATE_API_KEY"
    if len(runtime.api.api_keys) > 1:
        key += f" and {len(runtime.api.api_keys) - 1} more from FACEGATE_API_KEYS"
    print(f"facegate is serving on http://{HOST}:{httpd.server_address[1]} (x-api-key: {key})", flush=True)
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()
        runtime.close()
    print("facegate stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
