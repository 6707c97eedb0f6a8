"""Module sizes: a module of the layer package over 500 lines, or of the local runtime
over 650, is one that holds more than one concern. Split it by concern, or, if it
really is one cohesive role, say so in its docstring with a line starting
``Cohesive:`` and the reason, so that growing past the limit is a decision someone
wrote down, not an accident."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIMITS = {
    ROOT / "layers" / "facegate" / "facegate": 500,
    ROOT / "facegate_local": 650,
}
MARKER = "Cohesive:"


def oversized(path: Path, limit: int, root: Path = ROOT) -> str | None:
    """Why ``path`` breaks the rule, or None if it keeps it."""
    source = path.read_text(encoding="utf-8")
    lines = len(source.splitlines())
    if lines <= limit:
        return None
    docstring = ast.get_docstring(ast.parse(source)) or ""
    if any(line.strip().startswith(MARKER) for line in docstring.splitlines()):
        return None
    return f"{path.relative_to(root)} has {lines} lines (limit {limit}) and no '{MARKER}' reason in its docstring"


MODULES = [(path, limit) for folder, limit in LIMITS.items() for path in sorted(folder.rglob("*.py"))]


@pytest.mark.parametrize(("path", "limit"), MODULES, ids=[str(p.relative_to(ROOT)) for p, _ in MODULES])
def test_module_is_small_or_says_why(path: Path, limit: int):
    assert oversized(path, limit) is None, oversized(path, limit)


def test_the_rule_catches_a_long_module_and_honours_the_marker(tmp_path: Path):
    body = "x = 1\n" * 10
    plain = tmp_path / "plain.py"
    plain.write_text('"""A module."""\n' + body)
    marked = tmp_path / "marked.py"
    marked.write_text('"""A module.\n\nCohesive: one role, one place.\n"""\n' + body)
    mentioned = tmp_path / "mentioned.py"  # the word inside a sentence is no marker
    mentioned.write_text('"""A module that is not Cohesive: at all."""\n' + body)
    assert oversized(plain, 11, tmp_path) is None
    assert "plain.py has 11 lines (limit 10)" in (oversized(plain, 10, tmp_path) or "")
    assert oversized(marked, 10, tmp_path) is None
    assert oversized(mentioned, 10, tmp_path) is not None
