"""Pages the local server serves itself, without an API key: they are not API routes
(nothing of them is in template.yaml) and hold no data; the API calls they make send the
key the person types in.

* ``/``: the demo page — two photos in, face boxes, the decision, the similarity against
  its threshold, the attempts, and the vendors' health.
* ``/openapi.json``: the committed spec (docs/openapi.json, which a test keeps equal to
  what the code generates).
* ``/docs``: Swagger UI over that spec, its assets from the ``swagger-ui-bundle-v2``
  package (a dev dependency): no CDN, so it works offline.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
SPEC = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"

_COMMON = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"))
# The demo: its own inline script and style, photos as data: URLs, calls to this origin only.
_DEMO_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Swagger UI: scripts from this origin only (its bundle and our initializer); it sets inline styles.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _swagger(name: str) -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(swagger_ui_path) / name


@dataclass(frozen=True)
class Page:
    file: Callable[[], Path]
    content_type: str
    csp: str | None = None


PAGES: dict[str, Page] = {
    "/": Page(lambda: STATIC / "demo.html", "text/html; charset=utf-8", _DEMO_CSP),
    "/openapi.json": Page(lambda: SPEC, "application/json"),
    "/docs": Page(lambda: STATIC / "docs.html", "text/html; charset=utf-8", _DOCS_CSP),
    "/docs/init.js": Page(lambda: STATIC / "docs-init.js", "text/javascript; charset=utf-8"),
    "/docs/swagger-ui-bundle.js": Page(lambda: _swagger("swagger-ui-bundle.js"), "text/javascript; charset=utf-8"),
    "/docs/swagger-ui.css": Page(lambda: _swagger("swagger-ui.css"), "text/css; charset=utf-8"),
}


@cache
def _read(path: str) -> bytes:
    return PAGES[path].file().read_bytes()


def page(method: str, path: str) -> tuple[list[tuple[str, str]], bytes] | None:
    """(headers, body) when ``path`` is one of the pages and the method reads it."""
    found = PAGES.get(path)
    if found is None or method not in ("GET", "HEAD"):
        return None
    # Like every other answer, a page carries a request id (nothing is logged for it).
    headers = [("Content-Type", found.content_type), ("X-Request-Id", str(uuid.uuid4())), *_COMMON]
    if found.csp:
        headers.append(("Content-Security-Policy", found.csp))
    return headers, b"" if method == "HEAD" else _read(path)
