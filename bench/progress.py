"""A one-line progress bar on stderr: cases done, elapsed, an estimate of what is left.

On a terminal the line redraws in place and names what is being measured; elsewhere (CI
logs, nox) it prints one line per finished case.
"""

from __future__ import annotations

import sys
import time

WIDTH = 24


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Progress through `total` cases, of which `done` were finished before this session."""

    def __init__(self, total: int, done: int = 0, stream=None) -> None:
        self.total = total
        self.done = done
        self._start_done = done
        self._start = time.perf_counter()
        self.stream = sys.stderr if stream is None else stream
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.activity = ""

    def start(self) -> None:
        """Start the clock: elapsed time and the estimate count from here."""
        self._start = time.perf_counter()

    def line(self) -> str:
        filled = WIDTH * self.done // max(self.total, 1)
        elapsed = time.perf_counter() - self._start
        finished_here = self.done - self._start_done
        if finished_here:
            left = elapsed / finished_here * (self.total - self.done)
            eta = f", ~{_clock(left)} left"
        else:
            eta = ""
        return (f"[{'#' * filled}{'-' * (WIDTH - filled)}] {self.done}/{self.total} cases, "
                f"{_clock(elapsed)} elapsed{eta}  {self.activity}")

    def show(self, activity: str) -> None:
        """Name what is being measured now (redrawn on a terminal only)."""
        self.activity = activity
        if self.live:
            self.stream.write("\r\x1b[2K" + self.line())
            self.stream.flush()

    def advance(self, finished: str, count: int = 1) -> None:
        """`count` more cases done."""
        self.done += count
        self.activity = finished
        self.stream.write(("\r\x1b[2K" if self.live else "") + self.line()
                          + ("" if self.live else "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
