"""Pages the local server serves itself, without an API key: they are not API routes
(nothing of them is in template.yaml) and hold no data; the API calls they make send the
key the person types in.

``/``: the demo page — two photos in, face boxes, the decision, the similarity against
its threshold, the attempts, and the vendors' health.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"

# path -> (file under static/, content type)
PAGES: dict[str, tuple[str, str]] = {
    "/": ("demo.html", "text/html; charset=utf-8"),
}

# The page's own inline script and style, photos as data: URLs, and calls to this origin only.
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def page(method: str, path: str) -> tuple[list[tuple[str, str]], bytes] | None:
    """(headers, body) when ``path`` is one of the pages and the method reads it."""
    found = PAGES.get(path)
    if found is None or method not in ("GET", "HEAD"):
        return None
    name, content_type = found
    body = _read(name)
    return [("Content-Type", content_type), *SECURITY_HEADERS], b"" if method == "HEAD" else body
