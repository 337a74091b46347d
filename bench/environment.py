"""The fingerprint recorded with every run: what a number needs to be compared or repeated.

Machine (CPU model, cores, load), threads (torch, numba, BLAS environment variables),
versions (python, torch, numba, numpy, scipy, CUDA, cuDNN), kernel libraries (oneDNN on or
off, BLAS), GPU, the git commit with a dirty flag, the command line and the date.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy
import scipy
import torch

REPO = Path(__file__).resolve().parent.parent
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict:
    """Commit and whether tracked files other than results/ differ from it: results being
    rewritten (a run regenerating its own committed file) do not make the code dirty."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def _torch_blas() -> str | None:
    found = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
    return found.group(1) if found else None


def _numba() -> dict:
    try:
        import numba
    except ImportError:
        return {"version": None, "threads": None}
    return {"version": numba.__version__, "threads": numba.config.NUMBA_NUM_THREADS}


def _cuda() -> dict:
    available = torch.cuda.is_available()
    return {
        "available": available,
        "version": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if available else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if available else [],
    }


#: Cores' worth of CPU that other processes may use, in a short sample before the run, before
#: the machine counts as busy; and the length of that sample.
BUSY_CORES = 0.5
BUSY_SAMPLE_S = 1.0


def _bench_processes() -> list[str]:
    """Other running `python -m bench` processes (not this run's own)."""
    me, launcher = os.getpid(), os.getppid()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        pid = int(entry.name)
        if pid in (me, launcher) or parent == me:  # this run, what started it, its workers
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if any(args[i:i + 2] == ["-m", "bench"] for i in range(len(args))):
            found.append(f"{pid} ({' '.join(args)[:80]})")
    return found


def contention() -> list[str]:
    """Why this machine's numbers may be suspect now: other runs, or a busy machine."""
    warnings = []
    others = _bench_processes()
    if others:
        warnings.append(f"another rnnbench run shares this machine: {', '.join(others)}")
    busy = _others_busy_cores(BUSY_SAMPLE_S)
    if busy is not None and busy > BUSY_CORES:
        warnings.append(f"the machine is busy: other processes used {busy:.2f} cores over "
                        f"{BUSY_SAMPLE_S:g} s before this run started ({usable_cores()} usable)")
    return warnings


def _cpu_seconds() -> float | None:
    """CPU seconds all processors have spent busy since boot (Linux's /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, *rest = map(int, fields)
    steal = rest[0] if rest else 0
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _others_busy_cores(seconds: float) -> float | None:
    """Cores' worth of CPU used by everything but this process over `seconds` (a sample,
    unlike the load average, which still remembers the last minute's installs)."""
    start, mine = _cpu_seconds(), time.process_time()
    if start is None:
        return None
    time.sleep(seconds)
    return max(0.0, (_cpu_seconds() - start) - (time.process_time() - mine)) / seconds


def fingerprint(argv: list[str]) -> dict:
    """Everything above, as a JSON-ready dict."""
    numba_info = _numba()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": {"logical": os.cpu_count(), "usable": usable_cores()},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "threads": {
            "torch": torch.get_num_threads(),
            "torch_interop": torch.get_num_interop_threads(),
            "numba": numba_info["threads"],
            "environment": {v: os.environ.get(v) for v in THREAD_VARIABLES},
        },
        "versions": {"torch": torch.__version__, "numba": numba_info["version"],
                     "numpy": numpy.__version__, "scipy": scipy.__version__},
        "onednn": {"available": torch.backends.mkldnn.is_available(),
                   "enabled": bool(torch.backends.mkldnn.enabled)},
        "blas": _torch_blas(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": _cuda(),
        "git": git_state(),
        "python_implementation": platform.python_implementation(),
        "contention": contention(),
    }
