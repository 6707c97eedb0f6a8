"""A batch folder: the manifest and the files it names, as S3 keys. Shared by the
local batch runner (``python -m facegate_local.batch``) and the ``facegate`` CLI's
``batch submit`` and ``batch run``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def folder_files(root: Path, manifest: Path, skip: Iterable[Path] = ()) -> list[tuple[str, Path]]:
    """(S3 key, file) for every file under ``root`` but the manifest, hidden files and
    ``skip``: each under its path relative to the folder. The ``facegate`` CLI's
    ``batch submit`` uploads the same files."""
    skipped = [p.resolve() for p in skip]
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or path.resolve() == manifest.resolve()
            or any(part.startswith(".") for part in rel.parts)
            or any(path.resolve().is_relative_to(s) for s in skipped)
        ):
            continue
        files.append((rel.as_posix(), path))
    return files


def manifest_key(manifest: Path) -> str:
    return f"batches/{manifest.stem}{manifest.suffix.lower()}"


def find_manifest(path: Path) -> tuple[Path, Path]:
    """(root folder, manifest file) for a folder or a manifest."""
    if path.is_file():
        return path.parent, path
    if not path.is_dir():
        raise SystemExit(f"facegate batch: {path} is neither a folder nor a manifest file")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".jsonl", ".csv"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found) or "none"
        raise SystemExit(
            f"facegate batch: {path} must hold exactly one manifest (*.jsonl or *.csv) at its top level; "
            f"found: {names}. Name the manifest instead of the folder."
        )
    return path, found[0]
