"""Long-dependency accuracy sweeps: loss and success against T for RNN, IRNN, LSTM and GRU.

    python -m bench accuracy --profile quick       # (or python -m bench.claims.accuracy ...)
    python -m bench accuracy --profile default --jobs 2
    python -m bench accuracy --profile default --scheduler tcp://HOST:8786   # a Dask cluster
    python -m bench accuracy --report-only         # figures and ACCURACY.md from the JSON

A profile is a plan of training runs (bench.training.trainer) on the adding problem
(bench.training.tasks): every model at every T at one hidden size, the others also at the
LSTM's parameter count, several seeds; then the same small model trained by every trainable
implementation, which must follow the same curve (they compute the same math). The `smoke`
profile shrinks the plan to seconds, for tests.

Each run is a cell (`bench.sweep.cells`): its result is stored once, as soon as it finishes,
in <out>/cells/, named by the hash of its inputs (task, T, training config with seed and
implementation) and of the code that computes it (`CODE`). A sweep computes only the runs
without a cell, here or on a cluster (`bench.sweep.executors`), so running the same command
again after a kill, a failure or on another machine sharing the folder continues where it
stopped; `--retrain` computes every run again. The profile's file,
results/accuracy/<profile>.json, is then built from the cells of the plan, atomically; a
partial one (some runs failed) says how many runs it holds and never replaces a complete
one. Figures and ACCURACY.md are regenerated from the profile files, never edited by hand.

The sweep bears on claims D1 and D2 of the claims catalogue (`bench.claims.CLAIMS`, rendered
in results/CLAIMS.md); its anchor is Arjovsky, Shah & Bengio 2016 (`ARJOVSKY_2016`).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import impls
from bench import io as bench_io
from bench.environment import fingerprint
from bench.stopping import sigterm_raises
from bench.sweep import executors
from bench.sweep.cells import CellError, CellStore, code_version, computed
from bench.sweep.executors import ExecutorError, Job, LocalExecutor, executor
from bench.training.tasks import make_task
from bench.training.trainer import TrainConfig, matched_hidden_size, parameter_count, train

SCHEMA = "rnnbench-accuracy/1"
RESULTS = Path("results/accuracy")
#: The folder beside the profile files that holds one file per finished run.
CELLS = "cells"

#: The four models of claims D1/C3: name -> TrainConfig fields.
MODELS = {
    "rnn_tanh": {"cell": "rnn_tanh"},
    "irnn": {"cell": "rnn_relu", "irnn": True},
    "lstm": {"cell": "lstm"},
    "gru": {"cell": "gru"},
}
#: The model whose parameter count the others are matched to.
MATCH_TO = "lstm"

#: Arjovsky et al. 2016 (adding problem, 128 units, RMSProp 1e-3): the largest T at which
#: each model beat the 1/6 baseline, of T in {100, 200, 400, 750}; None: at none of them.
ARJOVSKY_2016 = {"lstm": 400, "rnn_tanh": None, "irnn": None}


@dataclass(frozen=True)
class Profile:
    """A sweep plan. `steps` and `lr` are (key, value) pairs: steps per T, rate per model.

    The learning rates differ per model because one rate does not suit all: in pilots at
    T=50 (H=32, batch 32, clip 1), Adam at 1e-2 left the IRNN at the baseline while 1e-3
    solved it; LSTM at 1e-3 had not left the baseline after 2000 steps at T=100, at 1e-2
    it solved in 700-800; the tanh RNN failed at both.

    `impl` names the implementation each model trains with: the fastest at these sizes
    (H=32, batch 32, one thread). `numba` runs the tanh, ReLU and GRU loops 3-7x faster
    than `torch` here (per-step overhead dominates such small matrices; at T=400 a GRU
    training step took 21 ms against 156 ms), `torch`'s fused oneDNN LSTM matches or beats
    it. The cross-implementation section shows the choice changes no result.
    """

    name: str
    description: str
    task: str
    lengths: tuple[int, ...]
    matched_lengths: tuple[int, ...]
    seeds: tuple[int, ...]
    hidden_size: int
    batch_size: int
    steps: tuple[tuple[int, int], ...]
    lr: tuple[tuple[str, float], ...]
    impl: tuple[tuple[str, str], ...]
    clip_norm: float
    eval_every: int
    eval_size: int
    log_every: int
    cross_T: int
    cross_cells: tuple[str, ...]
    cross_steps: int


_COMMON = dict(
    task="adding", hidden_size=32, batch_size=32, clip_norm=1.0,
    lr=(("rnn_tanh", 1e-2), ("irnn", 1e-3), ("lstm", 1e-2), ("gru", 1e-2)),
    impl=(("rnn_tanh", "numba"), ("irnn", "numba"), ("lstm", "torch"), ("gru", "numba")),
    eval_every=100, log_every=50, cross_T=50,
)

PROFILES = {
    "quick": Profile(
        name="quick", description="T=50 and 100, two seeds: a smoke run of the whole pipeline",
        lengths=(50, 100), matched_lengths=(50,), seeds=(0, 1),
        steps=((50, 1000), (100, 1500)), eval_size=500,
        cross_cells=("lstm",), cross_steps=100, **_COMMON),
    "default": Profile(
        name="default", description="T=50-400, three seeds: the committed results",
        lengths=(50, 100, 200, 400), matched_lengths=(50, 100, 200), seeds=(0, 1, 2),
        steps=((50, 1500), (100, 2000), (200, 4000), (400, 4000)), eval_size=1000,
        cross_cells=("lstm", "gru"), cross_steps=1000, **_COMMON),
    "full": Profile(
        name="full", description="literature scale: H=128 (Arjovsky et al. 2016's size), T=100 "
                                 "to 1000, ten seeds; days of CPU on one machine, meant for a "
                                 "cluster (`--estimate` states its cost)",
        lengths=(100, 200, 400, 750, 1000), matched_lengths=(100, 400), seeds=tuple(range(10)),
        steps=((100, 4000), (200, 6000), (400, 10000), (750, 10000), (1000, 10000)),
        eval_size=1000, cross_cells=("lstm", "gru"), cross_steps=1000,
        **{**_COMMON, "hidden_size": 128, "eval_every": 250}),
    "smoke": Profile(
        name="smoke", description="T=10, two seeds, 40 steps, torch only: seconds, for tests",
        lengths=(10,), matched_lengths=(), seeds=(0, 1), steps=((10, 40),), eval_size=64,
        cross_cells=(), cross_steps=10,
        **{**_COMMON, "hidden_size": 8, "batch_size": 8, "eval_every": 20, "log_every": 10,
           "impl": tuple((model, "torch") for model in MODELS)}),
}


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    key: str
    section: str          # "sweep" or "cross_impl"
    model: str
    sizing: str           # "equal" (the profile's H) or "matched" (the LSTM's parameters)
    T: int
    seed: int
    config: TrainConfig
    task: str = "adding"

    def inputs(self) -> dict:
        """What fixes the run's result, with the code version: its cell is named by them."""
        return {"task": self.task, "T": self.T, "config": dataclasses.asdict(self.config)}


def plan(profile: Profile) -> list[Run]:
    """Every run of the profile: seed by seed, so a partial sweep already covers every T."""
    task_for = {T: make_task(profile.task, T=T) for T in profile.lengths}
    steps, lr, impl = dict(profile.steps), dict(profile.lr), dict(profile.impl)
    missing = sorted(set(impl.values()) - set(impls.names()))
    if missing:
        raise ValueError(f"profile {profile.name!r} trains with {missing}, which is not "
                         f"registered; registered implementations: {', '.join(impls.names())}")
    runs = []
    for seed in profile.seeds:
        for T in sorted(profile.lengths, reverse=True):
            task = task_for[T]
            target = parameter_count(MODELS[MATCH_TO]["cell"], task.input_size,
                                     profile.hidden_size, task.output_size)
            sizings = ["equal"] + (["matched"] if T in profile.matched_lengths else [])
            for sizing in sizings:
                for model, fields in MODELS.items():
                    if sizing == "matched" and model == MATCH_TO:
                        continue
                    H = profile.hidden_size if sizing == "equal" else matched_hidden_size(
                        fields["cell"], task.input_size, task.output_size, target)
                    config = TrainConfig(
                        hidden_size=H, impl=impl[model], lr=lr[model],
                        batch_size=profile.batch_size, steps=steps[T],
                        clip_norm=profile.clip_norm, seed=seed,
                        eval_every=profile.eval_every, eval_size=profile.eval_size,
                        log_every=profile.log_every, stop_on_success=True, **fields)
                    runs.append(Run(f"sweep/{sizing}/{model}/T{T}/seed{seed}", "sweep", model,
                                    sizing, T, seed, config, profile.task))
    runs.extend(_cross_impl_runs(profile, lr))
    return runs


def _cross_impl_runs(profile: Profile, lr: dict) -> list[Run]:
    """The same model, seed and batches through every trainable implementation."""
    runs = []
    for cell in profile.cross_cells:
        model = next(m for m, fields in MODELS.items() if fields == {"cell": cell})
        for name in impls.names():
            impl = impls.get(name)
            dtype = "float64" if name == "reference" else "float32"
            if not (impl.trainable and impl.supports(cell, "cpu", getattr(torch, dtype))):
                continue
            config = TrainConfig(
                cell=cell, hidden_size=profile.hidden_size, impl=name, dtype=dtype,
                lr=lr[model], batch_size=profile.batch_size, steps=profile.cross_steps,
                clip_norm=profile.clip_norm, seed=0, eval_every=profile.eval_every,
                eval_size=profile.eval_size, log_every=1)
            runs.append(Run(f"cross_impl/{cell}/{name}", "cross_impl", model, "equal",
                            profile.cross_T, 0, config, profile.task))
    return runs


# -- running -------------------------------------------------------------------------------


class ResultsFileError(ValueError):
    """A results file (a profile's JSON or a cell) that cannot be read, or is not one."""


class SweepFailed(RuntimeError):
    """Some runs raised: the others' cells are kept."""


#: The code that decides a run's result: the implementations, the tasks and the trainer.
CODE = ("impls", "bench/training")


def cell_store(out: Path) -> CellStore:
    """The cells of the runs, in <out>/cells, for the code checked out now."""
    return CellStore(Path(out) / CELLS, code_version(*CODE))


def _execute(task_name: str, T: int, config: TrainConfig, threads: int) -> dict:
    """One run, in a worker process or in this one."""
    torch.set_num_threads(threads)
    return train(make_task(task_name, T=T), config).to_dict()


def _record(run: Run, result: dict, provenance: dict | None = None) -> dict:
    """A result as stored: the plan's identity and config, then what training produced,
    then where it was computed (None: a run adopted from an earlier profile file)."""
    identity = {"key": run.key, "section": run.section, "model": run.model,
                "sizing": run.sizing, "T": run.T, "seed": run.seed,
                "config": dataclasses.asdict(run.config)}
    return {**identity, **{k: v for k, v in result.items() if k not in identity},
            "provenance": provenance}


def write_json(path: Path, document: dict) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    bench_io.write_json(path, document)


def _read(path: Path):
    """A JSON file (bench.io); any failure to read it is a ResultsFileError naming it."""
    try:
        return bench_io.read_json(path)
    except (OSError, ValueError) as exc:
        message = str(exc)
        raise ResultsFileError(message if str(path) in message
                               else f"{path} cannot be read: {message}") from None


def read_results(path: Path) -> dict:
    """A profile's results file, checked to be one."""
    document = _read(path)
    if not isinstance(document, dict) or document.get("schema") != SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else type(document).__name__
        raise ResultsFileError(f"{path} is not a results file of `python -m bench accuracy` "
                               f"(schema {found!r}, expected {SCHEMA!r}); it may be damaged "
                               "or written by something else")
    runs = document.get("runs")
    if not (isinstance(document.get("profile"), dict)
            and isinstance(document.get("environment"), dict) and isinstance(runs, list)
            and all(isinstance(r, dict) and "key" in r and "config" in r for r in runs)):
        raise ResultsFileError(f"{path} lacks its profile, environment or runs (a list of "
                               "runs with their key and config); it may be damaged")
    return document


def _cells_present(store: CellStore, runs: list[Run]) -> dict[str, dict]:
    """The records of the runs whose cell the store holds."""
    done = {}
    for run in runs:
        try:
            cell = store.get(run.inputs())
        except CellError as exc:
            raise ResultsFileError(str(exc)) from None
        if cell is not None:
            done[run.key] = _record(run, cell["result"], cell["provenance"])
    return done


def _adopt(path: Path, runs: list[Run]) -> tuple[dict[str, dict], list[dict]]:
    """The runs of the profile file `path` whose inputs match the plan (made by an earlier
    version of the code, perhaps before there were cells), and the environments they were
    made in."""
    if not path.exists():
        return {}, []
    old = read_results(path)
    planned = {run.key: (run.task, dataclasses.asdict(run.config)) for run in runs}
    task = old["profile"].get("task")
    found = {r["key"]: {"provenance": None, **r} for r in old["runs"]
             if planned.get(r["key"]) == (task, r["config"])}
    environments = [*old.get("earlier_environments", []), old["environment"]] if found else []
    return found, environments


def _describe(record: dict) -> str:
    final = record["final"]
    if record["diverged"]:
        outcome = f"diverged ({record['divergence']})"
    elif record["solved"]:
        outcome = f"solved at step {record['steps_to_threshold']}"
    else:
        outcome = "not solved"
    c = record["config"]
    where = record["provenance"]["host"] if record.get("provenance") else "earlier"
    return (f"{record['key']} (H={c['hidden_size']}, {c['impl']} {c['dtype']}): held-out loss "
            f"{final['loss']:.4g} vs baseline {record['baseline_loss']:.4g}, {outcome}, "
            f"{record['seconds']:.0f} s on {where}")


def run_profile(profile: Profile, out: Path, *, executor=None, threads: int = 1,
                retrain: bool = False, adopt: bool = False, command: list[str]) -> Path:
    """Compute the runs of `profile` that have no cell yet (with `retrain`, all of them),
    each stored in its cell as it finishes, by `executor` (default: this process); then
    write <out>/<profile>.json from the cells of the plan. With `adopt`, runs of an
    existing <profile>.json whose inputs match the plan count as done too.

    The profile file is replaced when the plan is complete, or when there was no complete
    one to keep; a partial file says how many of the planned runs it holds. Raises
    SweepFailed if a run raised (its cell is missing; every other cell is kept).
    """
    torch.set_num_threads(threads)
    executor = executor or LocalExecutor(1)
    out = Path(out)
    runs = plan(profile)
    by_key = {run.key: run for run in runs}
    path = out / f"{profile.name}.json"
    store = cell_store(out)
    store.remove_stale_temporaries()
    environment = fingerprint(command)
    done, earlier = _adopt(path, runs) if adopt else ({}, [])
    if not retrain:
        done.update(_cells_present(store, runs))
    todo = [run for run in runs if run.key not in done]
    _log(f"accuracy: profile {profile.name}: {len(runs)} runs, {len(done)} already done, "
         f"{len(todo)} to compute on {executor.describe()} x {threads} thread(s); each "
         f"finished run goes to {store.directory} (code version {store.version})")
    records = dict(done)
    failures: dict[str, str] = {}
    started = time.perf_counter()
    again = " ".join(command)

    def finished(key: str, outcome: dict) -> None:
        run = by_key[key]
        store.put(key, run.inputs(), outcome["result"], outcome["provenance"])
        record = records[key] = _record(run, outcome["result"], outcome["provenance"])
        elapsed = time.perf_counter() - started
        _log(f"[{len(records)}/{len(runs)}, {elapsed / 60:.1f} min] {_describe(record)}")

    def failed(key: str, error: str) -> None:
        failures[key] = error
        _log(f"[failed] {key}:\n{error}")

    jobs = [Job(run.key, computed, (_execute, profile.task, run.T, run.config, threads))
            for run in todo]
    try:
        executor.run(jobs, finished, failed)
    except BaseException:
        _log(f"accuracy: stopped with {len(records)} of {len(runs)} runs done (their cells "
             f"are kept); {path} is as it was; continue with: {again}")
        raise
    complete = len(records) == len(runs)
    document = {
        "schema": SCHEMA, "profile": dataclasses.asdict(profile),
        "environment": environment, "earlier_environments": earlier,
        "executor": executor.describe(), "threads_per_job": threads,
        "code_version": store.version, "planned": len(runs), "present": len(records),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": [records[run.key] for run in runs if run.key in records],
    }
    keep_old = not complete and path.exists() and _is_complete(path)
    if not keep_old:
        write_json(path, document)
    spent = (time.perf_counter() - started) / 60
    _log(f"accuracy: {len(todo) - len(failures)} runs computed in {spent:.1f} min; "
         + (f"{path} kept (complete, from before)" if keep_old
            else f"wrote {path} ({len(records)} of {len(runs)} runs)"))
    if failures:
        raise SweepFailed(f"{len(failures)} of {len(runs)} runs failed ({', '.join(failures)});"
                          f" the {len(records)} finished runs are kept: continue with: {again}")
    return path


def _is_complete(path: Path) -> bool:
    document = read_results(path)
    return document.get("present", len(document["runs"])) == document.get(
        "planned", len(document["runs"]))


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- what a profile costs ------------------------------------------------------------------


def estimate_cost(profile: Profile, *, steps: int = 10, threads: int = 1) -> dict:
    """CPU time a profile's plan takes at most, measured here on a sample of its cells.

    Each distinct (model, T, hidden size, implementation) of the plan trains one step (its
    compilation, left out), then `steps` steps timed, in this process (the model's set-up
    counts with them); a run's cost is its step budget times that time per step, plus its
    evaluations (`eval_size` sequences every `eval_every` steps, a forward costing a third
    of a training step per batch). Runs that solve the task stop early: an upper bound.
    """
    torch.set_num_threads(threads)
    runs = plan(profile)
    per_step: dict[tuple, float] = {}
    for run in runs:
        c = run.config
        shape = (run.model, run.T, c.hidden_size, c.impl, c.dtype)
        if shape in per_step:
            continue
        probe = dataclasses.replace(c, steps=steps, eval_every=steps, eval_size=c.batch_size,
                                    stop_on_success=False)
        task = make_task(run.task, T=run.T)
        train(task, dataclasses.replace(probe, steps=1, eval_every=1))
        timed = train(task, probe)  # a diverging run ends early: count the steps it made
        per_step[shape] = timed.cpu_seconds / max(timed.steps_done, 1)
        _log(f"estimate: {run.model} T={run.T} H={c.hidden_size} ({c.impl}): "
             f"{per_step[shape] * 1e3:.1f} ms per step")
    rows: dict[tuple, dict] = {}
    for run in runs:
        c = run.config
        shape = (run.model, run.T, c.hidden_size, c.impl, c.dtype)
        evaluations = c.steps // c.eval_every + 1
        eval_steps = evaluations * math.ceil(c.eval_size / c.batch_size) / 3
        row = rows.setdefault(shape, {"model": run.model, "T": run.T, "H": c.hidden_size,
                                      "impl": c.impl, "runs": 0, "cpu_s": 0.0,
                                      "step_s": per_step[shape], "steps": c.steps})
        row["runs"] += 1
        row["cpu_s"] += per_step[shape] * (c.steps + eval_steps)
    total = sum(r["cpu_s"] for r in rows.values())
    return {"profile": profile.name, "runs": len(runs), "sample_steps": steps,
            "threads": threads, "cpu_hours": total / 3600, "rows": list(rows.values())}


def cost_lines(cost: dict, machine: str) -> list[str]:
    lines = [f"Profile `{cost['profile']}`: {cost['runs']} runs, at most "
             f"{cost['cpu_hours']:.1f} CPU-hours on {machine} ({cost['threads']} thread per "
             f"run; time per step measured on {cost['sample_steps']} steps of each shape, "
             "times the step budget, evaluations included; runs that solve stop earlier).",
             "", "| model | T | H | implementation | runs | ms per step | step budget | "
             "CPU-hours |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(cost["rows"], key=lambda r: -r["cpu_s"]):
        lines.append(f"| {r['model']} | {r['T']} | {r['H']} | {r['impl']} | {r['runs']} | "
                     f"{r['step_s'] * 1e3:.1f} | {r['steps']} | {r['cpu_s'] / 3600:.2f} |")
    return lines


# -- statistics ----------------------------------------------------------------------------


def mean_interval(values: list[float]) -> dict:
    """Mean and its Student-t 95% interval over seeds (None without two finite values)."""
    from scipy import stats  # here: a sweep's processes need not import it
    finite = np.array([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return {"n": 0, "mean": None, "ci95": None}
    mean = float(finite.mean())
    if finite.size < 2:
        return {"n": 1, "mean": mean, "ci95": None}
    sem = stats.sem(finite)
    if sem == 0:
        return {"n": int(finite.size), "mean": mean, "ci95": [mean, mean]}
    low, high = stats.t.interval(0.95, finite.size - 1, loc=mean, scale=sem)
    return {"n": int(finite.size), "mean": mean, "ci95": [float(low), float(high)]}


def rate_interval(successes: int, n: int) -> dict:
    """Success rate with its exact (Clopper-Pearson) 95% interval."""
    from scipy import stats
    ci = stats.binomtest(successes, n).proportion_ci(0.95, method="exact")
    return {"k": successes, "n": n, "rate": successes / n, "ci95": [ci.low, ci.high]}


def summarise(records: list[dict]) -> list[dict]:
    """One row per (sizing, model, T) of the sweep, over its seeds."""
    groups: dict[tuple, list[dict]] = {}
    sweep = [r for r in records if r["section"] == "sweep"]
    for r in sweep:
        groups.setdefault((r["sizing"], r["model"], r["T"]), []).append(r)
    # The model the others are matched to belongs in both comparisons.
    matched_T = {r["T"] for r in sweep if r["sizing"] == "matched"}
    for r in sweep:
        if r["model"] == MATCH_TO and r["sizing"] == "equal" and r["T"] in matched_T:
            groups.setdefault(("matched", r["model"], r["T"]), []).append(r)
    rows = []
    for (sizing, model, T), group in sorted(groups.items(), key=lambda kv: (
            kv[0][0], list(MODELS).index(kv[0][1]), kv[0][2])):
        losses = [r["final"]["loss"] for r in group]
        baselines = [r["baseline_loss"] for r in group]
        solved = [r["steps_to_threshold"] for r in group if r["solved"]]
        loss = mean_interval(losses)
        baseline = float(np.mean(baselines))
        rows.append({
            "sizing": sizing, "model": model, "T": T,
            "hidden_size": group[0]["config"]["hidden_size"],
            "n_parameters": group[0]["n_parameters"], "seeds": len(group),
            "loss": loss, "baseline": baseline,
            "beats_baseline": loss["ci95"] is not None and loss["ci95"][1] < baseline,
            "success": rate_interval(len(solved), len(group)),
            "steps_to_threshold": float(np.median(solved)) if solved else None,
            "diverged": sum(r["diverged"] for r in group),
            "steps_budget": group[0]["config"]["steps"],
        })
    return rows


#: Implementations agree with the float64 reference when their training losses over the
#: first 50 steps are within this relative gap and they solve (or not) alike. float32
#: rounding keeps the gap near 1e-7 there; a swapped gate or a wrong bias moves the first
#: step's loss by 1e-3 or more. Later in a run rounding is amplified (most at the sudden
#: drop from the plateau), so the whole run's gap is shown, not judged.
CROSS_IMPL_TOLERANCE = 1e-5


def cross_impl_summary(records: list[dict], first_steps: int = 50) -> list[dict]:
    """Per cell and implementation: final loss, the largest relative gap to the
    reference's training loss over the first steps and over the whole run, and whether it
    agrees (`CROSS_IMPL_TOLERANCE`)."""
    rows = []
    runs = [r for r in records if r["section"] == "cross_impl"]
    for cell in sorted({r["config"]["cell"] for r in runs}):
        group = [r for r in runs if r["config"]["cell"] == cell]
        reference = next((r for r in group if r["config"]["impl"] == "reference"), None)
        for r in group:
            row = {"cell": cell, "impl": r["config"]["impl"], "dtype": r["config"]["dtype"],
                   "final_loss": r["final"]["loss"], "solved": r["solved"],
                   "steps_to_threshold": r["steps_to_threshold"], "seconds": r["seconds"],
                   "gap_first": None, "gap_all": None, "agrees": None}
            if reference is not None:
                ours = np.array([c["loss"] for c in r["curve"]])
                theirs = np.array([c["loss"] for c in reference["curve"]])
                n = min(len(ours), len(theirs))
                gap = np.abs(ours[:n] - theirs[:n]) / np.abs(theirs[:n])
                row["gap_first"] = float(gap[:first_steps].max())
                row["gap_all"] = float(gap.max())
                row["agrees"] = bool(row["gap_first"] <= CROSS_IMPL_TOLERANCE
                                     and r["solved"] == reference["solved"])
            rows.append(row)
    return rows


# -- figures and report --------------------------------------------------------------------

COLOURS = {"rnn_tanh": "tab:blue", "irnn": "tab:orange", "lstm": "tab:green", "gru": "tab:red"}


def figures(document: dict, directory: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = document["profile"]["name"]
    directory.mkdir(parents=True, exist_ok=True)
    rows = summarise(document["runs"])
    paths = []
    sizings = sorted({r["sizing"] for r in rows})
    if rows:
        fig, axes = plt.subplots(2, len(sizings), figsize=(5.5 * len(sizings), 7.5),
                                 squeeze=False, sharex=True)
        for col, sizing in enumerate(sizings):
            loss_ax, rate_ax = axes[0, col], axes[1, col]
            for model in MODELS:
                mine = [r for r in rows if r["sizing"] == sizing and r["model"] == model]
                if not mine:
                    continue
                Ts = [r["T"] for r in mine]
                means = [r["loss"]["mean"] if r["loss"]["mean"] is not None else np.nan
                         for r in mine]
                low = [m - r["loss"]["ci95"][0] if r["loss"]["ci95"] else 0
                       for m, r in zip(means, mine)]
                high = [r["loss"]["ci95"][1] - m if r["loss"]["ci95"] else 0
                        for m, r in zip(means, mine)]
                label = f"{model} (H={mine[0]['hidden_size']}, {mine[0]['n_parameters']} par.)"
                loss_ax.errorbar(Ts, means, yerr=[low, high], marker="o", capsize=3,
                                 color=COLOURS[model], label=label)
                rate_ax.plot(Ts, [r["success"]["rate"] for r in mine], marker="o",
                             color=COLOURS[model], label=model)
            baselines = sorted({(r["T"], r["baseline"]) for r in rows if r["sizing"] == sizing})
            loss_ax.plot([t for t, _ in baselines], [b for _, b in baselines], "k--",
                         label="baseline (predict the mean)")
            loss_ax.axhline(0.01, color="grey", linestyle=":", label="success: MSE < 0.01")
            loss_ax.set_yscale("log")
            loss_ax.set_xscale("log")
            Ts = sorted({r["T"] for r in rows})
            rate_ax.set_xticks(Ts, [str(T) for T in Ts])
            rate_ax.minorticks_off()
            loss_ax.set_title(f"{sizing} {'hidden size' if sizing == 'equal' else 'parameters'}")
            loss_ax.set_ylabel("final held-out MSE (mean, 95% CI over seeds)")
            loss_ax.legend(fontsize=7)
            rate_ax.set_ylim(-0.05, 1.05)
            rate_ax.set_xlabel("T (sequence length)")
            rate_ax.set_ylabel("fraction of seeds solved")
        fig.suptitle(f"Adding problem, profile {name!r}")
        fig.tight_layout()
        paths.append(_save(fig, directory / f"{name}_final_loss_vs_T.png"))
        plt.close(fig)

        Ts = sorted({r["T"] for r in rows})
        fig, axes = plt.subplots(len(sizings), len(Ts), figsize=(4 * len(Ts), 3.3 * len(sizings)),
                                 squeeze=False)
        for i, sizing in enumerate(sizings):
            for j, T in enumerate(Ts):
                ax = axes[i, j]
                shown = [r for r in document["runs"] if r["section"] == "sweep"
                         and r["T"] == T and (r["sizing"] == sizing or (
                             sizing == "matched" and r["model"] == MATCH_TO))]
                if not any(r["sizing"] == sizing for r in shown):
                    ax.axis("off")
                    continue
                for r in shown:
                    steps = [e["step"] for e in r["evals"]]
                    ax.plot(steps, [e["loss"] for e in r["evals"]], color=COLOURS[r["model"]],
                            alpha=0.7, linewidth=1,
                            label=r["model"] if r["seed"] == document["profile"]["seeds"][0]
                            else None)
                baseline = [row["baseline"] for row in rows if row["T"] == T]
                if baseline:
                    ax.axhline(baseline[0], color="k", linestyle="--", linewidth=1)
                ax.set_yscale("log")
                ax.set_title(f"T={T}, {sizing}", fontsize=9)
                ax.set_xlabel("step")
                if j == 0:
                    ax.set_ylabel("held-out MSE")
                if i == 0 and j == 0:
                    ax.legend(fontsize=7)
        fig.suptitle("Learning curves (one line per seed; dashed: baseline)")
        fig.tight_layout()
        paths.append(_save(fig, directory / f"{name}_learning_curves.png"))
        plt.close(fig)

    cross = [r for r in document["runs"] if r["section"] == "cross_impl"]
    if cross:
        cells = sorted({r["config"]["cell"] for r in cross})
        fig, axes = plt.subplots(2, len(cells), figsize=(5.5 * len(cells), 7), squeeze=False,
                                 sharex="col")
        for col, cell in enumerate(cells):
            loss_ax, gap_ax = axes[0, col], axes[1, col]
            mine = [r for r in cross if r["config"]["cell"] == cell]
            reference = next((r for r in mine if r["config"]["impl"] == "reference"), None)
            for k, r in enumerate(mine):
                style = dict(linewidth=1, alpha=0.8, color=f"C{k}",
                             label=f"{r['config']['impl']} ({r['config']['dtype']})")
                steps = np.array([c["step"] for c in r["curve"]])
                losses = np.array([c["loss"] for c in r["curve"]])
                loss_ax.plot(steps, losses, **style)
                if reference is not None and r is not reference:
                    theirs = np.array([c["loss"] for c in reference["curve"]])
                    n = min(len(losses), len(theirs))
                    gap_ax.plot(steps[:n], np.abs(losses[:n] - theirs[:n]) / theirs[:n], **style)
            loss_ax.set_yscale("log")
            loss_ax.set_title(f"{cell}: same seed, same batches")
            loss_ax.set_ylabel("training loss")
            loss_ax.legend(fontsize=7)
            gap_ax.set_yscale("log")
            gap_ax.set_xlabel("step")
            gap_ax.set_ylabel("|loss - reference| / reference")
        fig.tight_layout()
        paths.append(_save(fig, directory / f"{name}_cross_impl.png"))
        plt.close(fig)
    return paths


def _save(fig, path: Path) -> Path:
    return bench_io.write_with(path, lambda tmp: fig.savefig(tmp, dpi=110))


def _fmt_interval(summary: dict) -> str:
    if summary["mean"] is None:
        return "n/a"
    if summary["ci95"] is None:
        return f"{summary['mean']:.3g}"
    return f"{summary['mean']:.3g} [{summary['ci95'][0]:.3g}, {summary['ci95'][1]:.3g}]"


def _provenance_lines(document: dict) -> list[str]:
    """Where the runs were computed: machine by machine, with their runs' wall time."""
    by_machine: dict[str, list[float]] = {}
    for r in document["runs"]:
        where = r.get("provenance")
        label = (f"{where['host']} ({where['cpu']}, {where['cores']} cores)" if where
                 else "an earlier sweep (see its environment in the JSON)")
        by_machine.setdefault(label, []).append(where["wall_s"] if where else r["seconds"])
    if not by_machine:
        return []
    parts = [f"{len(walls)} on {label}, {sum(walls) / 3600:.2f} h of runs"
             for label, walls in by_machine.items()]
    return [f"Computed: {'; '.join(parts)}.", ""]


def _profile_section(document: dict, directory: Path) -> list[str]:
    p = document["profile"]
    env = document["environment"]
    rows = summarise(document["runs"])
    done = len(document["runs"])
    dirty = " (dirty)" if env["git"]["dirty"] else ""
    load = env.get("load_average")
    sized = {"equal": "hidden size", "matched": "parameter count"}
    partial = ("" if done == document["planned"] else
               f" (**partial**: run `{' '.join(env['command'])}` again to compute the rest)")
    # Files written before the executors and cells recorded them: "jobs", no provenance.
    ran_by = document.get("executor") or f"{document['jobs']} local process(es)"
    lines = [
        f"## Profile `{p['name']}`: {p['description']}",
        "",
        f"From `{p['name']}.json`: {done} of {document['planned']} runs{partial}; command "
        f"`{' '.join(env['command'])}`, {env['date']}, commit "
        f"{str(env['git']['commit'])[:10]}{dirty}, torch {env['versions']['torch']}, numba "
        f"{env['versions']['numba']}, {env['cpu']} ({env['cores']['usable']} cores, load "
        f"{f'{load[0]:.1f}' if load else 'n/a'} at the start), {ran_by} x "
        f"{document['threads_per_job']} thread(s).",
        "",
        *_provenance_lines(document),
        f"Protocol: adding problem (Arjovsky 2016 form), Adam, learning rate per model "
        f"{', '.join(f'{m} {lr:g}' for m, lr in p['lr'])}; gradient norm clipped to "
        f"{p['clip_norm']:g}; batch {p['batch_size']}; step budget "
        f"{', '.join(f'T={t}: {s}' for t, s in p['steps'])}; held-out set of {p['eval_size']} "
        f"fresh sequences evaluated every {p['eval_every']} steps; a run stops at the first "
        f"evaluation with MSE < 0.01 (solved). Seeds {list(p['seeds'])}. Equal size: H="
        f"{p['hidden_size']}; matched: each model's H gives the parameter count nearest the "
        f"LSTM's at H={p['hidden_size']} (matched only at T in {list(p['matched_lengths'])}). "
        f"Implementations: {', '.join(f'{m} `{i}`' for m, i in p['impl'])}.",
        "",
    ]
    for sizing in sorted({r["sizing"] for r in rows}):
        Ts = sorted({r["T"] for r in rows if r["sizing"] == sizing})
        lines += [
            f"### Final held-out MSE, {sizing} {sized[sizing]}",
            "",
            "Mean over seeds [95% t-interval]; solved = seeds reaching MSE < 0.01 "
            "(median steps to get there); baseline = the held-out MSE of predicting the mean.",
            "",
            "| model | H | parameters | " + " | ".join(f"T={T}" for T in Ts) + " |",
            "|---|---|---|" + "---|" * len(Ts),
        ]
        for model in MODELS:
            mine = {r["T"]: r for r in rows if r["sizing"] == sizing and r["model"] == model}
            if not mine:
                continue
            first = next(iter(mine.values()))
            cells = []
            for T in Ts:
                r = mine.get(T)
                if r is None:
                    cells.append("")
                    continue
                s = r["success"]
                text = f"{_fmt_interval(r['loss'])}; solved {s['k']}/{s['n']}"
                if r["steps_to_threshold"] is not None:
                    text += f" (~{r['steps_to_threshold']:.0f} steps)"
                if r["diverged"]:
                    text += f"; {r['diverged']} diverged"
                cells.append(text)
            lines.append(f"| {model} | {first['hidden_size']} | {first['n_parameters']} | "
                         + " | ".join(cells) + " |")
        baseline = {r["T"]: r["baseline"] for r in rows if r["sizing"] == sizing}
        lines.append("| *baseline* | | | " + " | ".join(f"{baseline[T]:.3g}" for T in Ts) + " |")
        lines.append("")
    lines += _anchor_lines(rows, p) + _cross_impl_lines(document["runs"])
    figure_names = [f"{p['name']}_final_loss_vs_T.png", f"{p['name']}_learning_curves.png",
                    f"{p['name']}_cross_impl.png"]
    lines += [f"![{f}](figures/{f})" for f in figure_names if (directory / f).exists()]
    lines.append("")
    return lines


def _anchor_lines(rows: list[dict], profile: dict) -> list[str]:
    equal = [r for r in rows if r["sizing"] == "equal"]
    if not equal:
        return []
    budget = max(steps for _, steps in profile["steps"])
    lines = ["### Against the anchor (Arjovsky et al. 2016)", "",
             "Beats the baseline: the upper end of the 95% interval of the mean final MSE is "
             "below the held-out baseline. Arjovsky et al. (128 units, RMSProp 1e-3, T in "
             "100-750) report LSTM beating it up to T=400 and the tanh RNN and IRNN never. "
             f"This sweep differs: H={profile['hidden_size']} instead of 128; Adam with a rate "
             f"per model and the gradient norm clipped to {profile['clip_norm']:g} instead of "
             f"RMSProp at 1e-3 for all; at most {budget} steps of batch "
             f"{profile['batch_size']}, stopping at success.",
             "", "| model | T where it beats the baseline here | solved (MSE < 0.01) at | "
             "Arjovsky 2016: beats it up to |", "|---|---|---|---|"]
    for model in MODELS:
        mine = [r for r in equal if r["model"] == model]
        if not mine:
            continue
        beats = [r["T"] for r in mine if r["beats_baseline"]]
        solved = [f"T={r['T']} ({r['success']['k']}/{r['success']['n']})" for r in mine
                  if r["success"]["k"]]
        anchor = ARJOVSKY_2016.get(model, "not tested")
        anchor = "never" if anchor is None else (f"T={anchor}" if isinstance(anchor, int)
                                                 else anchor)
        lines.append(f"| {model} | {', '.join(map(str, beats)) or 'none'} | "
                     f"{', '.join(solved) or 'none'} | {anchor} |")
    lines.append("")
    return lines


def _cross_impl_lines(records: list[dict]) -> list[str]:
    rows = cross_impl_summary(records)
    if not rows:
        return []
    lines = ["### Across implementations", "",
             "The same model, seed and batches trained by each implementation (float32; "
             "`reference` in float64). Gap: largest relative difference of the training loss "
             "from the reference's, over the first 50 steps and over the whole run (float32 "
             "rounding grows along a training run, most at the sudden drop from the plateau). "
             f"Agrees: the first 50 steps' gap is at most {CROSS_IMPL_TOLERANCE:.0e} and the "
             "run solves the task exactly when the reference's does.",
             "", "| cell | implementation | final held-out loss | solved at step | "
             "gap, first 50 steps | gap, whole run | agrees | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        gap_first = "" if r["gap_first"] is None else f"{r['gap_first']:.1e}"
        gap_all = "" if r["gap_all"] is None else f"{r['gap_all']:.1e}"
        agrees = {None: "", True: "yes", False: "**no**"}[r["agrees"]]
        lines.append(f"| {r['cell']} | {r['impl']} ({r['dtype']}) | {r['final_loss']:.4g} | "
                     f"{r['steps_to_threshold'] if r['solved'] else 'not solved'} | "
                     f"{gap_first} | {gap_all} | {agrees} | {r['seconds']:.0f} |")
    lines.append("")
    return lines


def write_report(out: Path) -> Path:
    """Figures and ACCURACY.md from every profile's JSON in `out` (default profile first)."""
    documents = []
    for name in sorted(PROFILES, key=lambda n: n != "default"):
        path = out / f"{name}.json"
        if path.exists():
            documents.append(read_results(path))
    if not documents:
        raise ResultsFileError(f"no accuracy results in {out} (none of "
                               f"{', '.join(f'{n}.json' for n in PROFILES)}): run a profile "
                               "first")
    lines = ["# Long-dependency accuracy", "",
             "Generated by `python -m bench accuracy` from the JSON files beside this one "
             "(`python -m bench accuracy --report-only` rebuilds it without training); do not "
             "edit. The sweep bears on claims D1 and D2 of the suite's catalogue (defined in "
             "`bench/claims/`, reported with their verdicts in `results/CLAIMS.md`).", ""]
    for document in documents:
        figures(document, out / "figures")
        lines += _profile_section(document, out / "figures")
    return bench_io.write_text(out / "ACCURACY.md", "\n".join(lines))


# -- command line --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                        help="the plan (default quick): " + "; ".join(
                            f"{name}: {p.description}" for name, p in PROFILES.items()))
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help=f"results folder (default {RESULTS})")
    executors.add_options(parser, "runs")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per run (default 1: these models are small)")
    parser.add_argument("--retrain", action="store_true",
                        help="compute every run again, replacing its cell (by default a run "
                             "whose cell exists for this code is not computed again)")
    parser.add_argument("--keep-earlier", action="store_true",
                        help="also count as done the runs of the existing <profile>.json whose "
                             "inputs match the plan, though earlier code made them (the report "
                             "lists every environment)")
    parser.add_argument("--estimate", action="store_true",
                        help="train nothing whole: time a few steps of each shape of the "
                             "profile here and print the CPU-hours the profile takes at most")
    parser.add_argument("--no-report", dest="report", action="store_false",
                        help="train and write <profile>.json only, not the figures and "
                             "ACCURACY.md")
    parser.add_argument("--report-only", action="store_true",
                        help="only regenerate figures and ACCURACY.md from the JSON")
    return parser


def _check_options(parser: argparse.ArgumentParser, args) -> None:
    executors.check_options(parser, args, "runs")
    given = [o for o, on in (("--retrain", args.retrain), ("--keep-earlier", args.keep_earlier),
                             ("--scheduler", args.scheduler), ("--no-report", not args.report))
             if on]
    if args.report_only and given:
        parser.error(f"--report-only trains nothing: drop {' and '.join(given)}")


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_options(parser, args)
    if args.estimate:
        cost = estimate_cost(PROFILES[args.profile], threads=args.threads)
        environment = fingerprint([])
        print("\n".join(cost_lines(cost, f"{environment['cpu']} ({environment['cores']['usable']}"
                                          " cores)")))
        return 0
    try:
        if not args.report_only:
            command = [Path(sys.executable).name, "-m", "bench", "accuracy", *argv]
            with sigterm_raises():
                run_profile(PROFILES[args.profile], args.out,
                            executor=executor(args.jobs, args.scheduler),
                            threads=args.threads, retrain=args.retrain,
                            adopt=args.keep_earlier, command=command)
        if args.report:
            _log(f"accuracy: wrote {write_report(args.out)}")
    except (ResultsFileError, ExecutorError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except SweepFailed as exc:
        _log(f"accuracy: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
