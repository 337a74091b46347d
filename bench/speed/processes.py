"""Measuring processes: each measurement runs in a child that the parent can kill.

A hang in native code (a numba loop, a C kernel) never returns to Python, so no signal
handler or alarm inside the process can end it; a crash (SIGSEGV) takes the process with it.
So every measured call runs in a child, and the parent enforces the deadline from outside:
it kills a child that overruns and records why, and the run goes on.

The children come from a ``forkserver`` that has imported torch, impls and the
implementations' modules but computed nothing, so each starts clean without paying the
imports (``spawn`` where there is no forkserver). A child streams messages to the parent
(`Child.send`); the parent's `Watch` turns them into the deadline of what runs now. A
child's stderr goes to a file, so the parent can quote its last lines when it dies.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TIMEOUT = "timeout"
CRASHED = "crashed"
STDERR_TAIL = 2000
#: Seconds a child that has sent its result gets to exit before it is killed.
EXIT_GRACE_S = 10.0


def _preload() -> list[str]:
    """torch, impls, and the modules behind lazily named factories ("module:attribute").

    Importing is startup, not the first call; numba's kernels compile (or load from their
    cache) on the first call, not on import.
    """
    import impls
    lazy = [impl.factory.partition(":")[0] for impl in map(impls.get, impls.names())
            if isinstance(impl.factory, str)]
    return ["torch", "impls", "bench.workload", *sorted(set(lazy))]


_CONTEXT = None


def context():
    """The multiprocessing context every measuring child comes from (created once)."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            _CONTEXT = multiprocessing.get_context("forkserver")
            _CONTEXT.set_forkserver_preload(_preload())
        else:
            _CONTEXT = multiprocessing.get_context("spawn")
    return _CONTEXT


class Child:
    """The child's side: `send` a message to the parent."""

    def __init__(self, conn) -> None:
        self._conn = conn

    def send(self, message) -> None:
        self._conn.send(message)


def _child_main(target, spec, conn, stderr_path: str, sys_path: list[str],
                environ: dict[str, str]) -> None:
    sys.path[:] = sys_path
    os.environ.clear()  # the parent's environment now, not the fork server's at its start
    os.environ.update(environ)
    fd = os.open(stderr_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(fd, 2)
    os.close(fd)
    for module in spec.get("plugins", ()):
        __import__(module)
    target(spec, Child(conn))
    conn.close()


@dataclasses.dataclass
class Ended:
    """How a child ended: "done" with its last message, or a `TIMEOUT` or `CRASHED`."""

    how: str
    result: object = None
    message: str = ""


class Watch:
    """The parent's view of a child: sees each message, says when the child must be done.

    The default watch gives the whole child one deadline.
    """

    def __init__(self, seconds: float) -> None:
        self._deadline = time.monotonic() + seconds
        self.seconds = seconds

    def seen(self, message) -> None:
        """Called for every message but the last."""

    def deadline(self) -> float:
        """`time.monotonic()` by which the next message must come."""
        return self._deadline

    def overrun(self) -> str:
        """The message recorded when the child is killed for missing the deadline."""
        return f"killed after running over its {self.seconds:.3g} s budget"


def _stderr_tail(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text[-STDERR_TAIL:].strip()


def _death(exitcode: int | None, stderr: str) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        what = f"the measuring process died of {name}"
        if -exitcode == signal.SIGKILL:
            what += " (as the kernel's out-of-memory killer does)"
    else:
        what = f"the measuring process exited with status {exitcode} before reporting"
    return what + (f"; its last stderr:\n{stderr}" if stderr else "")


def run(target: Callable, spec: dict, watch: Watch) -> Ended:
    """Run target(spec, Child) in a fresh child; every message but the last goes to `watch`.

    The last message is a tuple ``("done", result)``. `spec` may name `plugins` to import
    first (a user's implementation registers itself on import).
    """
    ctx = context()
    receive, send = ctx.Pipe(duplex=False)
    with tempfile.NamedTemporaryFile(prefix="rnnbench-stderr-", delete=False) as f:
        stderr_path = Path(f.name)
    proc = ctx.Process(target=_child_main,
                       args=(target, spec, send, str(stderr_path), list(sys.path),
                             dict(os.environ)), daemon=True)
    proc.start()
    send.close()
    try:
        while True:
            left = watch.deadline() - time.monotonic()
            if left <= 0 or not receive.poll(left):
                return Ended(TIMEOUT, message=watch.overrun())
            try:
                message = receive.recv()
            except EOFError:
                proc.join()
                return Ended(CRASHED, message=_death(proc.exitcode, _stderr_tail(stderr_path)))
            if isinstance(message, tuple) and message and message[0] == "done":
                proc.join(EXIT_GRACE_S)  # let it exit on its own: its finalizers run
                return Ended("done", result=message[1])
            watch.seen(message)
    finally:
        receive.close()
        if proc.is_alive():
            proc.kill()
        proc.join()
        stderr_path.unlink(missing_ok=True)
