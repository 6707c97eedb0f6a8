"""A progress bar on stderr: redrawn in place on a terminal, a line per tenth otherwise."""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 30


class ProgressBar:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last: tuple[int, int | None, str] | None = None
        self._last_line: tuple[int, str] | None = None
        self._drawn = False

    def update(self, done: int, total: int | None, status: str = "") -> None:
        state = (done, total, status)
        if state == self._last:
            return
        self._last = state
        if total:
            fraction = min(1.0, done / total)
            filled = round(WIDTH * fraction)
            bar = "#" * filled + "-" * (WIDTH - filled)
            text = f"{self.label} [{bar}] {done}/{total} {fraction:4.0%}"
        else:
            text = f"{self.label} {done}/?"
        if status:
            text += f" {status}"
        if self.tty:
            self.stream.write("\r\x1b[K" + text)
            self._drawn = True
        else:
            line_key = (int(10 * done / total) if total else 0, status)
            if line_key == self._last_line:
                return
            self._last_line = line_key
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Ends the bar's line (a terminal's cursor would otherwise stay on it)."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False
