"""Regression gate: is the checked-out code slower than a base commit, on this machine, now?

Both sides are measured in the same run on the same machine: the base is checked out with
`git worktree add` into a temporary directory. Each round forks a fresh process per side (from
a per-tree process that imported torch and that tree's `impls`); the two take turns, one timed
block at a time (base, head, head, base, ...), so that a load change on a shared machine
weighs on both sides alike. Time is the process's CPU time by default: on a machine shared
with other jobs the elapsed time of one call varies by a factor of two or more, its CPU time
by far less, and more work per call shows in both. What is timed is `Workload.call` of the
gate's own `bench/workload.py` (the file beside this package), handed to both measuring
processes by path, so that base and head are timed by one definition of the call while each
imports its own `impls`. Each process yields one sample per case,
the fastest of its blocks (noise only ever adds time). A case is a regression when head is
slower by a one-sided Mann-Whitney U test, Holm-corrected over the cases, AND its median is
at least `--min-factor` times the base's. The test alone would flag tiny real shifts nobody
should be blocked on; the factor alone would flag noise. A stored baseline from another
machine is never used.

    python -m bench gate                    # working tree against HEAD~1
    python -m bench gate --base main --head HEAD --impl scripted
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import median

from scipy.stats import mannwhitneyu

from bench import io as bench_io
from bench.speed.cases import BUILT_IN
from bench.stopping import sigterm_raises

WORKER = Path(__file__).with_name("worker.py")
#: The definition of the measured call that both measuring processes load by path.
WORKLOAD = Path(__file__).resolve().parent.parent / "workload.py"
#: Temporary directories holding the gate's worktrees start with this; each holds a lock
#: file that its gate keeps locked while it runs, so a later gate can tell a leftover.
WORKTREE_PREFIX = "rnnbench-gate-worktree-"
WORKTREE_LOCK = "gate.lock"
#: Lines of a measuring process's stderr that an error message carries.
STDERR_LINES = 40
WORKING_TREE = "working tree"
REGRESSION, FASTER, SAME = "REGRESSION", "faster", "same"


@dataclass(frozen=True)
class Verdict:
    """One case's comparison: medians of the per-process samples and the decision."""

    case: str
    base_seconds: float
    head_seconds: float
    ratio: float
    p_slower: float
    p_slower_holm: float
    p_faster: float
    p_faster_holm: float
    verdict: str


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (family-wise error control)."""
    order = sorted(range(len(pvalues)), key=pvalues.__getitem__)
    adjusted = [0.0] * len(pvalues)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


def compare(base: dict[str, list[float]], head: dict[str, list[float]], *, alpha: float,
            min_factor: float) -> list[Verdict]:
    """Decide every case both sides measured; samples are seconds, one per process."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if min_factor < 1:
        raise ValueError(f"min_factor must be >= 1 (a slowdown factor), got {min_factor!r}")
    cases = sorted(set(base) & set(head))
    for case in cases:
        for side, samples in (("base", base[case]), ("head", head[case])):
            if len(samples) < 2:
                raise ValueError(
                    f"case {case!r}: the {side} side needs at least 2 samples, got {len(samples)}"
                )
    slower = [mannwhitneyu(head[c], base[c], alternative="greater").pvalue for c in cases]
    faster = [mannwhitneyu(head[c], base[c], alternative="less").pvalue for c in cases]
    slower_holm, faster_holm = holm(slower), holm(faster)
    verdicts = []
    for i, case in enumerate(cases):
        base_s, head_s = median(base[case]), median(head[case])
        ratio = head_s / base_s
        if slower_holm[i] < alpha and ratio >= min_factor:
            verdict = REGRESSION
        elif faster_holm[i] < alpha and ratio <= 1 / min_factor:
            verdict = FASTER
        else:
            verdict = SAME
        verdicts.append(Verdict(case, base_s, head_s, ratio, slower[i], slower_holm[i],
                                faster[i], faster_holm[i], verdict))
    return verdicts


def format_table(verdicts: list[Verdict], missing: dict[str, str], *, alpha: float,
                 min_factor: float) -> str:
    """A fixed-width table, one row per case, then the cases only one side could run."""
    header = ("case", "base ms", "head ms", "head/base", "p slower (Holm)", "verdict")
    rows = [header] + [
        (v.case, f"{v.base_seconds * 1e3:.3f}", f"{v.head_seconds * 1e3:.3f}", f"{v.ratio:.3f}",
         f"{v.p_slower_holm:.2g}", v.verdict)
        for v in verdicts
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for case, reason in sorted(missing.items()):
        lines.append(f"{case}: n/a ({reason})")
    lines.append(f"regression = slower with Holm-corrected one-sided Mann-Whitney p < {alpha:g} "
                 f"and head/base >= {min_factor:g}")
    return "\n".join(lines)


def worker_spec(args: argparse.Namespace) -> dict:
    """What each measuring process runs (read by bench/gate/worker.py)."""
    return {
        "impls": args.impl or list(BUILT_IN), "cells": args.cell, "modes": args.mode,
        "dtype": "float32", "shape": list(args.shape), "threads": args.threads,
        "block_seconds": args.block_seconds, "clock": args.clock, "workload": str(WORKLOAD),
    }


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise ValueError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(repo: Path, ref: str) -> str:
    """The commit a ref names, or a ValueError that says which ref was wrong."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except ValueError:
        raise ValueError(f"--base/--head: {ref!r} is not a commit in {repo}") from None


def toplevel(repo: Path) -> Path:
    """The root of the git repository `repo` lies in, or a ValueError that says so."""
    try:
        return Path(_git(repo, "rev-parse", "--show-toplevel"))
    except (ValueError, OSError):
        raise ValueError(f"--repo: {str(repo)!r} is not in a git repository") from None


def _locked_by_a_running_gate(holder: Path) -> bool:
    try:
        with open(holder / WORKTREE_LOCK) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no lock file: the gate died before or after holding it
        return False
    return False


def prune_stale_worktrees(repo: Path) -> list[Path]:
    """Remove worktrees that a killed gate left behind (not those of a gate still running).

    Then `git worktree prune` drops the records of worktrees whose directory is gone.
    Returns the worktrees removed.
    """
    removed = []
    listing = _git(repo, "worktree", "list", "--porcelain")
    for line in listing.splitlines():
        if not line.startswith("worktree "):
            continue
        tree = Path(line.removeprefix("worktree "))
        holder = tree.parent
        if not holder.name.startswith(WORKTREE_PREFIX) or _locked_by_a_running_gate(holder):
            continue
        with contextlib.suppress(ValueError):
            _git(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(holder, ignore_errors=True)
        removed.append(tree)
    _git(repo, "worktree", "prune")
    return removed


@contextlib.contextmanager
def checked_out(repo: Path, ref: str):
    """The tree of `ref`: the repository itself for the working tree, else a temporary worktree.

    The worktree is removed on leaving, also on an exception (SIGTERM is one inside `main`).
    """
    if ref == WORKING_TREE:
        yield repo
        return
    commit = resolve(repo, ref)
    with tempfile.TemporaryDirectory(prefix=WORKTREE_PREFIX) as tmp, \
            open(Path(tmp) / WORKTREE_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        tree = Path(tmp) / commit[:12]
        _git(repo, "worktree", "add", "--detach", str(tree), commit)
        try:
            yield tree
        finally:
            _git(repo, "worktree", "remove", "--force", str(tree))


class Sampler:
    """A process that imported torch and `impls` from one tree; each sample is a forked child.

    The children are fresh processes (their own allocations, JIT compilation and caches) but
    skip the import of torch, which costs more than the measuring itself.
    """

    def __init__(self, tree: Path, threads: int, timeout: float):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), env.get("PYTHONPATH")]))
        code = ("import runpy, sys; sys.argv.pop(0); "
                "runpy.run_path(sys.argv[0], run_name='__main__')")
        self.tree, self.timeout = tree, timeout
        self.stderr = tempfile.TemporaryFile(mode="w+")  # a pipe nobody reads could fill up
        self.closed = False
        self.registered: list[str] = []
        # Its own session: a terminal's Ctrl-C reaches the gate only, and the gate ends the
        # server and its forked child together (`close`).
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(WORKER), str(threads)], cwd=tree, env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            start_new_session=True)

    def stderr_tail(self, lines: int = STDERR_LINES) -> str:
        """The last `lines` lines the measuring processes wrote to stderr."""
        if self.stderr.closed:
            return ""
        self.stderr.seek(0)
        return "".join(self.stderr.readlines()[-lines:])

    def _ask(self, message: str) -> dict:
        try:
            self.process.stdin.write(message + "\n")
            self.process.stdin.flush()
        except OSError:  # it has exited; its stdout says the rest
            pass
        ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            if ready:  # end of its output: it has exited, or is about to
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=10)
                what = f"exited (status {self.process.poll()}) without an answer"
            else:
                what = f"gave no answer within {self.timeout:g} s"
            tail = self.stderr_tail()
            self.close(kill=True)
            raise RuntimeError(f"gate worker for {self.tree} {what}; the end of its stderr:\n"
                               f"{tail or '(empty)'}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"gate worker failed in {self.tree}:\n{reply['error']}")
        return reply

    def start(self, spec: dict) -> dict[str, str]:
        """Fork a fresh child and let it prepare every case; returns the cases it cannot run.

        `registered` is then the implementations registered in this tree.
        """
        reply = self._ask(json.dumps(spec))
        if not Path(reply["impls_file"]).resolve().is_relative_to(self.tree.resolve()):
            raise RuntimeError(
                f"the worker for {self.tree} imported impls from {reply['impls_file']}: an "
                "installed copy shadows the tree; install the project editable or not at all")
        self.registered = reply["registered"]
        return reply["missing"]

    def block(self) -> dict[str, float]:
        """The child times one block of every case: {case: seconds per call}."""
        return self._ask("block")

    def finish(self) -> None:
        """The child exits; the next `start` forks a new one."""
        self._ask("done")

    def close(self, kill: bool = False) -> None:
        """End the server: on end of input it exits; `kill` (or 30 s) ends it and its child."""
        if self.closed:
            return
        self.closed = True
        if not kill and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill = True
        if kill:
            # The group is the server's session: its forked child is in it too. While any
            # member lives, Linux gives the group's id to no new process.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.stderr):
            with contextlib.suppress(OSError):
                stream.close()


@contextlib.contextmanager
def sampling(tree: Path, threads: int, timeout: float):
    """A `Sampler` that is closed on leaving, and killed at once when leaving by an exception."""
    sampler = Sampler(tree, threads, timeout)
    try:
        yield sampler
    except BaseException:
        sampler.close(kill=True)
        raise
    sampler.close()


def check_impls(requested: list[str], registered: dict[str, list[str]]) -> None:
    """A ValueError naming every requested implementation that no side registers."""
    known = sorted(set().union(*registered.values()))
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise ValueError(
            f"--impl: unknown implementation{'s' * (len(unknown) > 1)} "
            f"{', '.join(map(repr, unknown))} (registered in neither "
            f"{' nor '.join(registered)}); known implementations: {', '.join(known)}")


def collect(trees: dict[str, Path], spec: dict, rounds: int, blocks: int, timeout: float,
            log=None):
    """Samples per side and case: one fresh process per side and round.

    In each round a base child and a head child are alive together and take turns block by
    block (base, head, head, base, ...), so that whatever else the machine does at that moment
    weighs on both sides alike; the round's sample is each child's fastest block.
    Returns ({side: {case: [seconds per call, one per round]}}, {case: why n/a}).
    """
    samples = {side: {} for side in trees}
    missing = {}
    with contextlib.ExitStack() as stack:
        samplers = {side: stack.enter_context(sampling(tree, spec["threads"], timeout))
                    for side, tree in trees.items()}
        for r in range(rounds):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            times = {side: {} for side in order}
            for side in order:
                for case, reason in samplers[side].start(spec).items():
                    missing[case] = f"{side}: {reason}"
            if r == 0:
                check_impls(spec["impls"], {side: s.registered for side, s in samplers.items()})
            for b in range(blocks):
                for side in order if b % 2 == 0 else order[::-1]:
                    for case, seconds in samplers[side].block().items():
                        times[side].setdefault(case, []).append(seconds)
            for side in order:
                samplers[side].finish()
                for case, seconds in times[side].items():
                    samples[side].setdefault(case, []).append(min(seconds))
            if log:
                log(f"gate: round {r + 1}/{rounds} done")
    for case in set(samples["base"]) ^ set(samples["head"]):
        side = "head" if case in samples["head"] else "base"
        missing.setdefault(case, f"measured on {side} only")
    return samples, missing


def _shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected T,B,H as three positive ints, got {text!r}")
    return values


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench gate",
        description="Compare the checked-out code against a base commit on this machine, "
                    "interleaving fresh processes; exit 1 on a regression.")
    p.add_argument("--repo", type=Path, default=Path("."), help="git repository (default: .)")
    p.add_argument("--base", default="HEAD~1", help="base ref (default: HEAD~1)")
    p.add_argument("--head", default=WORKING_TREE,
                   help="head ref (default: the working tree, uncommitted changes included)")
    p.add_argument("--impl", action="append",
                   help="implementation to gate (repeatable; default: the built-in ones, "
                        f"{', '.join(BUILT_IN)}: the peers' compiles in every process would "
                        "take most of the gate's time)")
    p.add_argument("--cell", action="append", choices=["lstm", "gru", "rnn_tanh", "rnn_relu"],
                   help="cell (repeatable; default: lstm and gru)")
    p.add_argument("--mode", action="append", choices=["inference", "training"],
                   help="mode (repeatable; default: both)")
    p.add_argument("--shape", type=_shape, default=(32, 16, 64),
                   help="T,B,H with input size = H (default: 32,16,64)")
    p.add_argument("--rounds", type=int, default=12,
                   help="processes per side, i.e. samples per case and side (default: 12)")
    p.add_argument("--blocks", type=int, default=10,
                   help="timed blocks per case and process, alternating sides (default: 10)")
    p.add_argument("--block-seconds", type=float, default=0.004,
                   help="minimum length of one timed block (default: 0.004)")
    p.add_argument("--threads", type=int, default=1, help="torch/numba threads (default: 1)")
    p.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                   help="cpu: process CPU time, robust to other jobs (default); wall: elapsed")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="family-wise significance level (default: 0.05)")
    p.add_argument("--min-factor", type=float, default=1.10,
                   help="smallest head/base ratio of medians that counts (default: 1.10)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per sample (default: 600)")
    p.add_argument("--json", type=Path, help="also write samples and verdicts here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


class Terminated(BaseException):
    """SIGTERM, raised where the gate is, so that every context it is in unwinds."""




def main(argv: list[str]) -> int:
    """Run the gate; 0 = no regression, 1 = regression, 2 = could not run.

    SIGTERM and Ctrl-C end it with exit status 143 and 130, after removing its worktree.
    """
    args = parser().parse_args(argv)
    args.cell = args.cell or ["lstm", "gru"]
    args.mode = args.mode or ["inference", "training"]
    for name in ("rounds", "blocks", "threads"):
        if getattr(args, name) < (2 if name == "rounds" else 1):
            print(f"gate: --{name} is too small: {getattr(args, name)}", file=sys.stderr)
            return 2
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    spec = worker_spec(args)
    try:
        with sigterm_raises(lambda signum: Terminated()):
            repo = toplevel(args.repo)
            for tree in prune_stale_worktrees(repo):
                if log:
                    log(f"gate: removed the worktree {tree} that an earlier gate left behind")
            with checked_out(repo, args.base) as base_tree, \
                    checked_out(repo, args.head) as head:
                samples, missing = collect({"base": base_tree, "head": head}, spec,
                                           args.rounds, args.blocks, args.timeout, log)
        verdicts = compare(samples["base"], samples["head"], alpha=args.alpha,
                           min_factor=args.min_factor)
    except (ValueError, RuntimeError) as err:
        print(f"gate: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gate: interrupted", file=sys.stderr)
        raise SystemExit(128 + signal.SIGINT) from None
    except Terminated:
        print("gate: terminated", file=sys.stderr)
        raise SystemExit(128 + signal.SIGTERM) from None
    if not verdicts:
        print("gate: no case could be measured on both sides", file=sys.stderr)
        return 2
    print(f"base {args.base} ({resolve(repo, args.base)[:10]}) vs head {args.head}; "
          f"{args.rounds} processes per side, shape T,B,H = {args.shape}, "
          f"{args.threads} thread(s), {args.clock} time per call")
    print(format_table(verdicts, missing, alpha=args.alpha, min_factor=args.min_factor))
    regressions = [v.case for v in verdicts if v.verdict == REGRESSION]
    print(f"gate: {'FAIL, regression in ' + ', '.join(regressions) if regressions else 'pass'}")
    if args.json:
        bench_io.write_json(args.json, {
            "base": args.base, "head": args.head, "spec": spec, "rounds": args.rounds,
            "blocks": args.blocks,
            "alpha": args.alpha, "min_factor": args.min_factor, "samples": samples,
            "missing": missing, "verdicts": [asdict(v) for v in verdicts],
        })
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
