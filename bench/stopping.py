"""SIGTERM ends a long command as Ctrl-C does: by an exception raised where it runs.

So every context the command is in unwinds (worker processes stopped, worktrees removed,
results written whole), and it can say how to continue. Python's default for SIGTERM is to
die on the spot, which would skip all of that.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable


def exit_status(signum: int) -> SystemExit:
    """What a shell reports for a process ended by `signum`: 128 + its number."""
    return SystemExit(128 + signum)


@contextlib.contextmanager
def sigterm_raises(exception_for: Callable[[int], BaseException] = exit_status):
    """Within the block, SIGTERM raises exception_for(signum) (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum, frame):
        raise exception_for(signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
