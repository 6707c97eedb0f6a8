"""``make bench``: every benchmark in this directory, one after another, each in its own
interpreter (so one's imports and memory never colour the next's numbers).

    .venv/bin/python -m bench [NAME ...]     # e.g. `python -m bench image_cost engine`

Each prints a markdown section; bench/RESULTS.md keeps the ones written down.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks() -> dict[str, Path]:
    return {p.stem.removesuffix("_bench"): p for p in sorted(HERE.glob("*.py")) if not p.name.startswith("_")}


def main(argv: list[str]) -> int:
    found = benchmarks()
    names = argv or list(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; there are: {', '.join(found)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n## {name}\n", flush=True)
        if subprocess.run([sys.executable, str(found[name])], check=False).returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
