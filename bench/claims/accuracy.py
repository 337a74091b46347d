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
from bench.claims.experiment import save_figure
from bench.claims.intervals import fmt, fmt_rate, median_interval, wilson_interval
from bench.environment import fingerprint
from bench.stopping import sigterm_raises
from bench.sweep import executors
from bench.sweep.cells import CellError, CellStore, code_version, computed
from bench.sweep.executors import ExecutorError, Job, LocalExecutor, executor
from bench.training.tasks import make_task
from bench.training.trainer import TrainConfig, matched_hidden_size, parameter_count, train

#: Version 2: tasks per profile, the learning-rate search, test-set figures.
SCHEMA = "rnnbench-accuracy/2"
RESULTS = Path("results/accuracy")
#: The folder beside the profile files that holds one file per finished run.
CELLS = "cells"

#: The models of claims C3, D1 and D2: name -> TrainConfig fields. `lstm_fb1` is the LSTM
#: with its forget gate's bias at 1 (Gers et al. 2000; Jozefowicz et al. 2015 found it
#: closes most of the LSTM's gap to the GRU).
MODELS = {
    "rnn_tanh": {"cell": "rnn_tanh"},
    "irnn": {"cell": "rnn_relu", "irnn": True},
    "lstm": {"cell": "lstm"},
    "lstm_fb1": {"cell": "lstm", "forget_bias": 1.0},
    "gru": {"cell": "gru"},
}
#: The model whose parameter count the others are matched to.
MATCH_TO = "lstm"

#: Arjovsky et al. 2016 (adding problem, 128 units, RMSProp 1e-3): the largest T at which
#: each model beat the 1/6 baseline, of T in {100, 200, 400, 750}; None: at none of them.
ARJOVSKY_2016 = {"lstm": 400, "rnn_tanh": None, "irnn": None}

#: What the literature reports for each task, beside which the sweep's rows are read.
TASK_ANCHORS = {
    "adding": "Arjovsky, Shah & Bengio 2016 (128 units, RMSProp 1e-3, T = 100 to 750): the "
              "LSTM beat the 1/6 baseline up to T=400, the tanh RNN and the IRNN at no T; "
              "Hochreiter & Schmidhuber 1997 (the task's older form) solved T up to 1000 with "
              "the LSTM.",
    "copy": "Arjovsky, Shah & Bengio 2016 (10 symbols of 8 categories, 128 units): the LSTM "
            "went below the memoryless baseline 10 ln 8 / (T+20) at T=100 but not at T=200 "
            "and beyond; the tanh RNN stayed at the baseline.",
    "temporal_order": "Hochreiter & Schmidhuber 1997 (experiment 6a, T about 100): the LSTM "
                      "classified every test sequence correctly in every trial, after about "
                      "31,000 training sequences on average; the other recurrent nets they "
                      "tried failed.",
    "reber": "Hochreiter & Schmidhuber 1997 (experiment 1): the LSTM learned the embedded "
             "Reber grammar in nearly every trial, after about 10,000 training strings; "
             "Elman nets and RTRL rarely or never did.",
}


@dataclass(frozen=True)
class TaskPlan:
    """One task of a sweep: its name (`make_task`), its step budget per length (`T` None
    for a task without one, the embedded Reber grammar) and its fixed parameters."""

    task: str
    steps: tuple[tuple[int | None, int], ...]
    params: tuple[tuple[str, object], ...] = ()

    @property
    def lengths(self) -> tuple[int | None, ...]:
        return tuple(T for T, _ in self.steps)

    def make(self, T: int | None):
        return make_task(self.task, **({} if T is None else {"T": T}), **dict(self.params))


@dataclass(frozen=True)
class Profile:
    """A sweep plan: every model of `models` on every task and length of `tasks`, at the
    equal hidden size, and the `matched` models also at the LSTM's parameter count; `seeds`
    each. The learning rate is searched per model and task (`search_plan`): each rate of
    `lr_grid` is trained on the task's shortest length with the first seed, and the one
    with the lowest validation loss serves every length and seed (the matched size takes
    its model's rate).

    `impl` names the implementation each model trains with: the fastest at these sizes
    (one thread). `numba` runs the tanh, ReLU and GRU loops 3-7x faster than `torch` here
    (per-step overhead dominates such small matrices; at T=400 a GRU training step took
    21 ms against 156 ms), `torch`'s fused oneDNN LSTM matches or beats it. The
    cross-implementation section shows the choice changes no result.
    """

    name: str
    description: str
    tasks: tuple[TaskPlan, ...]
    models: tuple[str, ...]
    matched: tuple[str, ...]
    seeds: tuple[int, ...]
    hidden_size: int
    batch_size: int
    lr_grid: tuple[float, ...]
    impl: tuple[tuple[str, str], ...]
    clip_norm: float
    eval_every: int
    eval_size: int
    log_every: int
    cross_T: int
    cross_cells: tuple[str, ...]
    cross_steps: int


_COMMON = dict(
    models=tuple(MODELS), matched=("gru",), hidden_size=32, batch_size=32, clip_norm=1.0,
    lr_grid=(1e-3, 3e-3, 1e-2),
    impl=(("rnn_tanh", "numba"), ("irnn", "numba"), ("lstm", "torch"), ("lstm_fb1", "torch"),
          ("gru", "numba")),
    eval_every=100, log_every=50, cross_T=50,
)
_COPY = (("n_symbols", 10), ("n_categories", 8))

PROFILES = {
    "quick": Profile(
        name="quick", description="adding T=50 and copy T=20, two seeds, three models: a run "
                                  "of the whole pipeline in minutes",
        tasks=(TaskPlan("adding", ((50, 800),)), TaskPlan("copy", ((20, 600),), _COPY)),
        seeds=(0, 1), eval_size=300, cross_cells=("lstm",), cross_steps=100,
        **{**_COMMON, "models": ("rnn_tanh", "lstm", "gru"), "lr_grid": (3e-3, 1e-2)}),
    "default": Profile(
        name="default", description="the four tasks in their literature forms at H=32, five "
                                    "seeds: the committed results",
        tasks=(TaskPlan("adding", ((100, 2000), (200, 2500), (400, 2500))),
               TaskPlan("copy", ((50, 2000), (100, 2000)), _COPY),
               TaskPlan("temporal_order", ((100, 1500),)),
               TaskPlan("reber", ((None, 1000),))),
        seeds=tuple(range(5)), eval_size=1000, cross_cells=("lstm", "gru"), cross_steps=1000,
        **_COMMON),
    "full": Profile(
        name="full", description="literature scale: H=128 (Arjovsky et al. 2016's size), adding "
                                 "T=100 to 1000, copy T=100 to 300, ten seeds; days of CPU on "
                                 "one machine, meant for a cluster (`--estimate` states its cost)",
        tasks=(TaskPlan("adding", ((100, 4000), (200, 6000), (400, 10000), (750, 10000),
                                   (1000, 10000))),
               TaskPlan("copy", ((100, 10000), (200, 10000), (300, 10000)), _COPY),
               TaskPlan("temporal_order", ((100, 5000), (200, 5000))),
               TaskPlan("reber", ((None, 3000),))),
        seeds=tuple(range(10)), eval_size=1000, cross_cells=("lstm", "gru"), cross_steps=1000,
        **{**_COMMON, "hidden_size": 128, "eval_every": 250}),
    "smoke": Profile(
        name="smoke", description="adding T=10 and copy T=5, two seeds, 40 steps, torch only: "
                                  "seconds, for tests",
        tasks=(TaskPlan("adding", ((10, 40),)),
               TaskPlan("copy", ((5, 40),), (("n_symbols", 2), ("n_categories", 3)))),
        seeds=(0, 1), eval_size=64, cross_cells=(), cross_steps=10,
        **{**_COMMON, "hidden_size": 8, "batch_size": 8, "eval_every": 20, "log_every": 10,
           "lr_grid": (1e-2, 3e-2), "impl": tuple((model, "torch") for model in MODELS)}),
}


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    key: str
    section: str          # "search", "sweep" or "cross_impl"
    model: str
    sizing: str           # "equal" (the profile's H) or "matched" (the LSTM's parameters)
    task: TaskPlan
    T: int | None
    seed: int
    config: TrainConfig

    def inputs(self) -> dict:
        """What fixes the run's result, with the code version: its cell is named by them."""
        return {"task": self.task.task, "T": self.T, "params": dict(self.task.params),
                "config": dataclasses.asdict(self.config)}


def _check_impls(profile: Profile) -> None:
    missing = sorted(set(dict(profile.impl).values()) - set(impls.names()))
    if missing:
        raise ValueError(f"profile {profile.name!r} trains with {missing}, which is not "
                         f"registered; registered implementations: {', '.join(impls.names())}")


def _config(profile: Profile, model: str, H: int, lr: float, steps: int, seed: int,
            **overrides) -> TrainConfig:
    settings = dict(hidden_size=H, impl=dict(profile.impl)[model], lr=lr,
                    batch_size=profile.batch_size, steps=steps, clip_norm=profile.clip_norm,
                    seed=seed, eval_every=profile.eval_every, eval_size=profile.eval_size,
                    log_every=profile.log_every, stop_on_success=True, **MODELS[model])
    settings.update(overrides)
    return TrainConfig(**settings)


def _T_label(T: int | None) -> str:
    return "" if T is None else f"T{T}"


def search_plan(profile: Profile) -> list[Run]:
    """The learning-rate search: every rate of the grid, per model and task, at the task's
    shortest length, first seed, equal hidden size."""
    _check_impls(profile)
    runs = []
    for plan_ in profile.tasks:
        T, steps = plan_.steps[0]
        for model in profile.models:
            for lr in profile.lr_grid:
                config = _config(profile, model, profile.hidden_size, lr, steps,
                                 profile.seeds[0])
                runs.append(Run(f"search/{plan_.task}{_T_label(T)}/{model}/lr{lr:g}", "search",
                                model, "equal", plan_, T, profile.seeds[0], config))
    return runs


def chosen_rates(runs: list[Run], records: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """task -> model -> {"lr", "tried"}: the searched rate with the lowest best validation
    loss (a diverged run counts as infinite; ties go to the smaller rate)."""
    rates: dict[str, dict[str, dict]] = {}
    for run in runs:
        record = records[run.key]
        finite = [e["loss"] for e in record["evals"] if math.isfinite(e["loss"])]
        best = math.inf if record["diverged"] else min(finite, default=math.inf)
        tried = {"lr": run.config.lr, "best_validation_loss": best,
                 "diverged": record["diverged"]}
        entry = rates.setdefault(run.task.task, {}).setdefault(run.model, {"tried": []})
        entry["tried"].append(tried)
    for by_model in rates.values():
        for entry in by_model.values():
            entry["lr"] = min(entry["tried"], key=lambda t: (t["best_validation_loss"],
                                                             t["lr"]))["lr"]
    return rates


def plan(profile: Profile, rates: dict[str, dict[str, dict]] | None = None) -> list[Run]:
    """Every run of the sweep at the chosen `rates` (None: the grid's first rate, which
    serves `estimate_cost`), seed by seed, so a partial sweep already covers every length.
    The search's winning runs are among them (same inputs, same cell)."""
    _check_impls(profile)

    def lr(task: str, model: str) -> float:
        return profile.lr_grid[0] if rates is None else rates[task][model]["lr"]

    runs = []
    for seed in profile.seeds:
        for plan_ in profile.tasks:
            for T, steps in sorted(plan_.steps, key=lambda ts: -(ts[0] or 0)):
                task = plan_.make(T)
                target = parameter_count(MODELS[MATCH_TO]["cell"], task.input_size,
                                         profile.hidden_size, task.output_size)
                for model in profile.models:
                    sizings = ["equal"] + (["matched"] if model in profile.matched else [])
                    for sizing in sizings:
                        H = profile.hidden_size if sizing == "equal" else matched_hidden_size(
                            MODELS[model]["cell"], task.input_size, task.output_size, target)
                        config = _config(profile, model, H, lr(plan_.task, model), steps, seed)
                        runs.append(Run(f"sweep/{plan_.task}{_T_label(T)}/{sizing}/{model}/"
                                        f"seed{seed}", "sweep", model, sizing, plan_, T, seed,
                                        config))
    runs.extend(_cross_impl_runs(profile, lr))
    return runs


def _cross_impl_runs(profile: Profile, lr) -> list[Run]:
    """The same model, seed and batches through every trainable implementation, on the
    adding problem at `cross_T`."""
    runs = []
    if "adding" not in [t.task for t in profile.tasks]:  # its rates come from the adding task
        return runs
    adding = TaskPlan("adding", ((profile.cross_T, profile.cross_steps),))
    for cell in profile.cross_cells:
        model = next(m for m, fields in MODELS.items() if fields == {"cell": cell})
        for name in impls.names():
            impl = impls.get(name)
            dtype = "float64" if name == "reference" else "float32"
            if not (impl.trainable and impl.supports(cell, "cpu", getattr(torch, dtype))):
                continue
            config = _config(profile, model, profile.hidden_size, lr("adding", model),
                             profile.cross_steps, 0, impl=name, dtype=dtype, log_every=1,
                             stop_on_success=False)
            runs.append(Run(f"cross_impl/{cell}/{name}", "cross_impl", model, "equal", adding,
                            profile.cross_T, 0, config))
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


def _execute(task: TaskPlan, T: int | None, config: TrainConfig, threads: int) -> dict:
    """One run, in a worker process or in this one."""
    torch.set_num_threads(threads)
    return train(task.make(T), config).to_dict()


def _record(run: Run, result: dict, provenance: dict | None = None) -> dict:
    """A result as stored: the plan's identity and config, then what training produced,
    then where it was computed (None: a run adopted from an earlier profile file)."""
    identity = {"key": run.key, "section": run.section, "model": run.model,
                "sizing": run.sizing, "task_name": run.task.task, "T": run.T, "seed": run.seed,
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
        if isinstance(found, str) and found.startswith("rnnbench-accuracy/"):
            raise ResultsFileError(f"{path} was written by an earlier version of `python -m "
                                   f"bench accuracy` (schema {found!r}, this one reads "
                                   f"{SCHEMA!r}): run its profile again to replace it")
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
    planned = {run.key: (run.task.task, dataclasses.asdict(run.config)) for run in runs}
    found = {r["key"]: {"provenance": None, **r} for r in old["runs"]
             if planned.get(r["key"]) == (r.get("task_name"), r["config"])}
    environments = [*old.get("earlier_environments", []), old["environment"]] if found else []
    return found, environments


def _describe(record: dict) -> str:
    test = record["test"]
    if record["diverged"]:
        outcome = f"diverged ({record['divergence']})"
    elif record["solved"]:
        outcome = f"solved at step {record['steps_to_threshold']}"
    else:
        outcome = "not solved"
    c = record["config"]
    where = record["provenance"]["host"] if record.get("provenance") else "earlier"
    return (f"{record['key']} (H={c['hidden_size']}, {c['impl']} {c['dtype']}, lr "
            f"{c['lr']:g}): test loss {test['loss']:.4g} vs baseline "
            f"{test['baseline_loss']:.4g}, {outcome}, {record['seconds']:.0f} s on {where}")


def run_profile(profile: Profile, out: Path, *, executor=None, threads: int = 1,
                retrain: bool = False, adopt: bool = False, command: list[str]) -> Path:
    """Compute the runs of `profile` that have no cell yet (with `retrain`, all of them),
    each stored in its cell as it finishes, by `executor` (default: this process): first
    the learning-rate search, then the sweep at the chosen rates. Then write
    <out>/<profile>.json from the cells of the plan. With `adopt`, runs of an existing
    <profile>.json whose inputs match the plan count as done too.

    The profile file is replaced when the plan is complete, or when there was no complete
    one to keep; a partial file says how many of the planned runs it holds. Raises
    SweepFailed if a run raised (its cell is missing; every other cell is kept).
    """
    torch.set_num_threads(threads)
    executor = executor or LocalExecutor(1)
    out = Path(out)
    path = out / f"{profile.name}.json"
    store = cell_store(out)
    store.remove_stale_temporaries()
    environment = fingerprint(command)
    again = " ".join(command)
    started = time.perf_counter()
    records: dict[str, dict] = {}
    earlier: list[dict] = []
    fresh: set[str] = set()    # the cells computed by this call

    def compute(runs: list[Run], stage: str) -> dict[str, str]:
        """Every run of `runs` without a record, through the executor; their failures."""
        by_key = {run.key: run for run in runs}
        done, older = _adopt(path, runs) if adopt else ({}, [])
        earlier.extend(e for e in older if e not in earlier)
        # With `retrain`, a cell computed earlier in this call (a search run that is also a
        # sweep run) is not computed twice.
        done.update(_cells_present(store, runs if not retrain else
                                   [r for r in runs if store.name(r.inputs()) in fresh]))
        records.update(done)
        todo = [run for run in runs if run.key not in records]
        _log(f"accuracy: profile {profile.name}, {stage}: {len(runs)} runs, "
             f"{len(runs) - len(todo)} already done, {len(todo)} to compute on "
             f"{executor.describe()} x {threads} thread(s); each finished run goes to "
             f"{store.directory} (code version {store.version})")
        failures: dict[str, str] = {}
        count = [len(runs) - len(todo)]

        def finished(key: str, outcome: dict) -> None:
            run = by_key[key]
            store.put(key, run.inputs(), outcome["result"], outcome["provenance"])
            fresh.add(store.name(run.inputs()))
            record = records[key] = _record(run, outcome["result"], outcome["provenance"])
            count[0] += 1
            elapsed = time.perf_counter() - started
            _log(f"[{stage} {count[0]}/{len(runs)}, {elapsed / 60:.1f} min] "
                 f"{_describe(record)}")

        def failed(key: str, error: str) -> None:
            failures[key] = error
            _log(f"[failed] {key}:\n{error}")

        jobs = [Job(run.key, computed, (_execute, run.task, run.T, run.config, threads))
                for run in todo]
        try:
            executor.run(jobs, finished, failed)
        except BaseException:
            _log(f"accuracy: stopped with {len(records)} runs done (their cells are kept); "
                 f"{path} is as it was; continue with: {again}")
            raise
        return failures

    search = search_plan(profile)
    failures = compute(search, "learning-rate search")
    if failures:
        raise SweepFailed(f"{len(failures)} runs of the learning-rate search failed "
                          f"({', '.join(failures)}); the finished runs are kept: continue "
                          f"with: {again}")
    rates = chosen_rates(search, records)
    runs = plan(profile, rates)
    failures = compute(runs, "sweep")
    planned = {run.key: run for run in search + runs}
    present = [key for key in planned if key in records]
    complete = len(present) == len(planned)
    document = {
        "schema": SCHEMA, "profile": dataclasses.asdict(profile), "rates": rates,
        "environment": environment, "earlier_environments": earlier,
        "executor": executor.describe(), "threads_per_job": threads,
        "code_version": store.version, "planned": len(planned), "present": len(present),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "runs": [records[key] for key in present],
    }
    # A call that computed nothing (a claim reading the sweep, say) leaves a complete file of
    # this code as it is, with the command and executor that made it.
    unchanged = (complete and not fresh and not adopt and path.exists() and _is_complete(path)
                 and read_results(path).get("code_version") == store.version)
    keep_old = unchanged or (not complete and path.exists() and _is_complete(path))
    if not keep_old:
        write_json(path, document)
    spent = (time.perf_counter() - started) / 60
    _log(f"accuracy: runs computed in {spent:.1f} min; "
         + (f"{path} kept (complete, from before)" if keep_old
            else f"wrote {path} ({len(present)} of {len(planned)} runs)"))
    if failures:
        raise SweepFailed(f"{len(failures)} of {len(planned)} runs failed "
                          f"({', '.join(failures)}); the {len(present)} finished runs are "
                          f"kept: continue with: {again}")
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
    unique = {}
    for run in search_plan(profile) + plan(profile):  # the search's winners are sweep runs
        unique.setdefault(repr(run.inputs()), run)
    runs = list(unique.values())
    per_step: dict[tuple, float] = {}
    for run in runs:
        c = run.config
        shape = (run.task.task, run.model, run.T, c.hidden_size, c.impl, c.dtype)
        if shape in per_step:
            continue
        probe = dataclasses.replace(c, steps=steps, eval_every=steps, eval_size=c.batch_size,
                                    stop_on_success=False)
        task = run.task.make(run.T)
        train(task, dataclasses.replace(probe, steps=1, eval_every=1))
        timed = train(task, probe)  # a diverging run ends early: count the steps it made
        per_step[shape] = timed.cpu_seconds / max(timed.steps_done, 1)
        _log(f"estimate: {run.task.task} {run.model} T={run.T} H={c.hidden_size} ({c.impl}): "
             f"{per_step[shape] * 1e3:.1f} ms per step")
    rows: dict[tuple, dict] = {}
    for run in runs:
        c = run.config
        shape = (run.task.task, run.model, run.T, c.hidden_size, c.impl, c.dtype)
        evaluations = c.steps // c.eval_every + 1
        eval_steps = evaluations * math.ceil(c.eval_size / c.batch_size) / 3
        row = rows.setdefault(shape, {"task": run.task.task, "model": run.model, "T": run.T,
                                      "H": c.hidden_size, "impl": c.impl, "runs": 0, "cpu_s": 0.0,
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
             "", "| task | model | T | H | implementation | runs | ms per step | step budget | "
             "CPU-hours |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(cost["rows"], key=lambda r: -r["cpu_s"]):
        lines.append(f"| {r['task']} | {r['model']} | {r['T']} | {r['H']} | {r['impl']} | "
                     f"{r['runs']} | "
                     f"{r['step_s'] * 1e3:.1f} | {r['steps']} | {r['cpu_s'] / 3600:.2f} |")
    return lines


# -- statistics ----------------------------------------------------------------------------


def summarise(records: list[dict]) -> list[dict]:
    """One row per (task, sizing, model, T) of the sweep, over its seeds, from the test
    figures: the median test loss with its bootstrap interval over the runs that did not
    diverge, the Wilson interval of the success rate (a diverged run counts as a failure),
    the median steps to success on the validation set, the number diverged."""
    groups: dict[tuple, list[dict]] = {}
    sweep = [r for r in records if r["section"] == "sweep"]
    for r in sweep:
        groups.setdefault((r["task_name"], r["sizing"], r["model"], r["T"]), []).append(r)
    # The model the others are matched to belongs in both comparisons.
    matched = {(r["task_name"], r["T"]) for r in sweep if r["sizing"] == "matched"}
    for r in sweep:
        if (r["model"] == MATCH_TO and r["sizing"] == "equal"
                and (r["task_name"], r["T"]) in matched):
            groups.setdefault((r["task_name"], "matched", r["model"], r["T"]), []).append(r)
    rows = []
    for (task, sizing, model, T), group in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1], list(MODELS).index(kv[0][2]), kv[0][3] or 0)):
        kept = [r for r in group if not r["diverged"]]
        solved = [r for r in kept if r["test"]["solved"]]
        baseline = float(np.median([r["test"]["baseline_loss"] for r in group]))
        loss = median_interval([r["test"]["loss"] for r in kept])
        steps = [r["steps_to_threshold"] for r in solved if r["steps_to_threshold"] is not None]
        rows.append({
            "task": task, "sizing": sizing, "model": model, "T": T,
            "hidden_size": group[0]["config"]["hidden_size"], "lr": group[0]["config"]["lr"],
            "n_parameters": group[0]["n_parameters"], "seeds": len(group),
            "loss": loss, "baseline": baseline,
            "beats_baseline": loss["ci95"] is not None and loss["ci95"][1] < baseline,
            "accuracy": median_interval([r["test"]["accuracy"] for r in kept
                                         if r["test"].get("accuracy") is not None]),
            "success": wilson_interval(len(solved), len(group)),
            "steps_to_threshold": float(np.median(steps)) if steps else None,
            "test_losses": [r["test"]["loss"] for r in kept], "solved_steps": steps,
            "diverged": len(group) - len(kept),
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

COLOURS = {"rnn_tanh": "tab:blue", "irnn": "tab:orange", "lstm": "tab:green",
           "lstm_fb1": "tab:olive", "gru": "tab:red"}
TASK_TITLES = {"adding": "adding problem (MSE)", "copy": "copy memory (cross-entropy)",
               "temporal_order": "temporal order (cross-entropy)",
               "reber": "embedded Reber (cross-entropy)"}


def _x_label(T: int | None) -> str:
    return "-" if T is None else str(T)


def draw_sweep(rows: list[dict], path: Path, title: str) -> Path:
    """Per task: each model's test loss over the baseline (median, interval) and its solved
    fraction (Wilson interval) at every length; `rows` from `summarise`, one sizing."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(2, len(tasks), figsize=(4.2 * len(tasks), 7), squeeze=False)
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    width = 0.8 / max(len(models), 1)
    for col, task in enumerate(tasks):
        loss_ax, rate_ax = axes[0, col], axes[1, col]
        Ts = sorted({r["T"] for r in rows if r["task"] == task}, key=lambda t: t or 0)
        for k, model in enumerate(models):
            mine = {r["T"]: r for r in rows if r["task"] == task and r["model"] == model}
            xs = [i - 0.4 + width * (k + 0.5) for i, T in enumerate(Ts) if T in mine]
            shown = [mine[T] for T in Ts if T in mine]
            ratio = [r["loss"]["median"] / r["baseline"] if r["loss"]["median"] is not None
                     else np.nan for r in shown]
            low = [(r["loss"]["median"] - r["loss"]["ci95"][0]) / r["baseline"]
                   if r["loss"]["ci95"] else 0 for r in shown]
            high = [(r["loss"]["ci95"][1] - r["loss"]["median"]) / r["baseline"]
                    if r["loss"]["ci95"] else 0 for r in shown]
            loss_ax.errorbar(xs, ratio, yerr=[low, high], fmt="o", capsize=2, ms=4,
                             color=COLOURS[model], label=model if col == 0 else None)
            for x, r in zip(xs, shown):
                if r["diverged"]:
                    loss_ax.annotate(f"{r['diverged']}x", (x, 1.6), ha="center", fontsize=7,
                                     color=COLOURS[model])
            rates = [r["success"]["rate"] for r in shown]
            rate_ax.bar(xs, rates, width=width, color=COLOURS[model])
            rate_ax.errorbar(xs, rates, yerr=[[r["success"]["rate"] - r["success"]["ci95"][0]
                                               for r in shown],
                                              [r["success"]["ci95"][1] - r["success"]["rate"]
                                               for r in shown]],
                             fmt="none", ecolor="k", elinewidth=0.8, capsize=2)
        loss_ax.axhline(1.0, color="k", linestyle="--", linewidth=1)
        loss_ax.set_yscale("log")
        loss_ax.set_ylim(top=2.5)
        loss_ax.set_title(TASK_TITLES.get(task, task), fontsize=10)
        for ax in (loss_ax, rate_ax):
            ax.set_xticks(range(len(Ts)), [_x_label(T) for T in Ts])
            ax.set_xlim(-0.6, len(Ts) - 0.4)
            ax.set_xlabel("T" if Ts != [None] else "")
        rate_ax.set_ylim(0, 1.05)
        if col == 0:
            loss_ax.set_ylabel("test loss / memoryless baseline\n(median, 95% bootstrap CI)")
            rate_ax.set_ylabel("fraction of seeds solved\n(task's own rule, Wilson 95% CI)")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{title}: below the dashed line a model beats the baseline; 'Nx' above a "
                 "point: N seeds diverged (not in the median)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def figures(document: dict, directory: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name = document["profile"]["name"]
    directory.mkdir(parents=True, exist_ok=True)
    rows = [r for r in summarise(document["runs"]) if r["sizing"] == "equal"]
    paths = []
    if rows:
        paths.append(draw_sweep(rows, directory / f"{name}_loss_vs_T.png",
                                f"Profile {name!r}, equal hidden size"))

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
        paths.append(save_figure(fig, directory / f"{name}_cross_impl.png"))
    return paths


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
    partial = ("" if done == document["planned"] else
               f" (**partial**: run `{' '.join(env['command'])}` again to compute the rest)")
    lines = [
        f"## Profile `{p['name']}`: {p['description']}",
        "",
        f"From `{p['name']}.json`: {done} of {document['planned']} runs{partial}; command "
        f"`{' '.join(env['command'])}`, {env['date']}, commit "
        f"{str(env['git']['commit'])[:10]}{dirty}, torch {env['versions']['torch']}, numba "
        f"{env['versions']['numba']}, {env['cpu']} ({env['cores']['usable']} cores, load "
        f"{f'{load[0]:.1f}' if load else 'n/a'} at the start), {document['executor']} x "
        f"{document['threads_per_job']} thread(s).",
        "",
        *_provenance_lines(document),
        "Protocol: Adam, gradient norm clipped to "
        f"{p['clip_norm']:g}, batch {p['batch_size']}; the learning rate of each model on each "
        f"task is the one of {{{', '.join(f'{lr:g}' for lr in p['lr_grid'])}}} whose run on the "
        "task's shortest length (first seed) reached the lowest validation loss. Every "
        f"run is evaluated every {p['eval_every']} steps on a validation set of "
        f"{p['eval_size']} sequences and stops at the first evaluation that meets the task's "
        "success rule; the model kept is the one with the lowest validation loss, and the "
        f"figures below are its score on a separate test set of {p['eval_size']}. Seeds "
        f"{list(p['seeds'])}. Equal size: H={p['hidden_size']}; matched: "
        f"{', '.join(p['matched'])} at the hidden size whose parameter count is nearest the "
        f"LSTM's at H={p['hidden_size']}. Implementations: "
        f"{', '.join(f'{m} `{i}`' for m, i in p['impl'])}.",
        "",
        *_rate_lines(document),
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        plan_ = next(t for t in p["tasks"] if t["task"] == task)
        example = make_task(task, **({"T": plan_["steps"][0][0]} if plan_["steps"][0][0]
                                     else {}), **dict(plan_["params"]))
        budgets = ", ".join(f"{'T=' + str(T) + ': ' if T else ''}{steps}"
                            for T, steps in plan_["steps"])
        lines += [
            f"### {TASK_TITLES.get(task, task)}",
            "",
            f"Task parameters {example.describe()}; step budget {budgets}; success: "
            f"{example.success_rule}. Each cell: median test loss [95% bootstrap interval] "
            "over the seeds that did not diverge; solved k/n [Wilson 95%] by the task's rule "
            "on the test set (a diverged seed counts as unsolved), with the median validation "
            "steps to success; the last row is the test set's memoryless baseline.",
            "",
        ]
        for sizing in ("equal", "matched"):
            mine = [r for r in rows if r["task"] == task and r["sizing"] == sizing]
            if not mine:
                continue
            Ts = sorted({r["T"] for r in mine}, key=lambda t: t or 0)
            what = "hidden size" if sizing == "equal" else "parameter count"
            lines += [f"{sizing.capitalize()} {what}:", "",
                      "| model | H | parameters | lr | " + " | ".join(
                          f"T={T}" if T else "test loss" for T in Ts) + " |",
                      "|---|---|---|---|" + "---|" * len(Ts)]
            for model in MODELS:
                by_T = {r["T"]: r for r in mine if r["model"] == model}
                if not by_T:
                    continue
                first = next(iter(by_T.values()))
                cells = []
                for T in Ts:
                    r = by_T.get(T)
                    if r is None:
                        cells.append("")
                        continue
                    text = f"{fmt(r['loss'], 'median')}; solved {fmt_rate(r['success'])}"
                    if r["steps_to_threshold"] is not None:
                        text += f" (~{r['steps_to_threshold']:.0f} steps)"
                    if r["diverged"]:
                        text += f"; {r['diverged']} diverged"
                    cells.append(text)
                lines.append(f"| {model} | {first['hidden_size']} | {first['n_parameters']} | "
                             f"{first['lr']:g} | " + " | ".join(cells) + " |")
            baseline = {r["T"]: r["baseline"] for r in mine}
            lines += ["| *baseline* | | | | " + " | ".join(f"{baseline[T]:.3g}" for T in Ts)
                      + " |", ""]
        lines += _anchor_lines(task, [r for r in rows if r["task"] == task], p)
    lines += _cross_impl_lines(document["runs"])
    figure_names = [f"{p['name']}_loss_vs_T.png", f"{p['name']}_cross_impl.png"]
    lines += [f"![{f}](figures/{f})" for f in figure_names if (directory / f).exists()]
    lines.append("")
    return lines


def _rate_lines(document: dict) -> list[str]:
    rates = document.get("rates") or {}
    if not rates:
        return []
    lines = ["Learning rates chosen (best validation loss of each tried rate):", "",
             "| task | model | chosen | tried |", "|---|---|---|---|"]
    for task, by_model in rates.items():
        for model, entry in by_model.items():
            tried = ", ".join(f"{t['lr']:g}: " + ("diverged" if t["diverged"] else
                                                  f"{t['best_validation_loss']:.3g}")
                              for t in entry["tried"])
            lines.append(f"| {task} | {model} | {entry['lr']:g} | {tried} |")
    return lines + [""]


def _anchor_lines(task: str, rows: list[dict], profile: dict) -> list[str]:
    """The task's published figure beside where each model beats the baseline here."""
    equal = [r for r in rows if r["sizing"] == "equal"]
    if not equal:
        return []
    lines = [f"Against the literature: {TASK_ANCHORS[task]} Here (H={profile['hidden_size']}, "
             "Adam with a searched rate and clipping, a step budget of minutes): a model beats "
             "the baseline at a length when the upper end of its median test loss's interval "
             "is below it.", "", "| model | beats the baseline at | solved in some seed at |",
             "|---|---|---|"]
    for model in MODELS:
        mine = [r for r in equal if r["model"] == model]
        if not mine:
            continue
        beats = [_x_label(r["T"]) for r in mine if r["beats_baseline"]]
        solved = [f"{_x_label(r['T'])} ({r['success']['k']}/{r['success']['n']})"
                  for r in mine if r["success"]["k"]]
        lines.append(f"| {model} | {', '.join(beats) or 'none'} | "
                     f"{', '.join(solved) or 'none'} |")
    return lines + [""]


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
    parser.add_argument("--tasks", nargs="+", metavar="TASK", default=None,
                        help="only these tasks of the profile (e.g. `--tasks adding copy`): "
                             "the profile's file then holds that part of its plan, and says so")
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
                             ("--scheduler", args.scheduler), ("--no-report", not args.report),
                             ("--tasks", args.tasks is not None)) if on]
    if args.report_only and given:
        parser.error(f"--report-only trains nothing: drop {' and '.join(given)}")


def narrowed(profile: Profile, tasks: list[str] | None) -> Profile:
    """`profile` with only `tasks` (None: all of them), its description saying so."""
    if tasks is None:
        return profile
    known = [t.task for t in profile.tasks]
    unknown = [t for t in tasks if t not in known]
    if unknown:
        raise ValueError(f"profile {profile.name!r} has no task {', '.join(unknown)}; its "
                         f"tasks: {', '.join(known)}")
    return dataclasses.replace(
        profile, tasks=tuple(t for t in profile.tasks if t.task in tasks),
        description=f"{profile.description} (this file: {', '.join(tasks)} only)")


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_options(parser, args)
    try:
        profile = narrowed(PROFILES[args.profile], args.tasks)
    except ValueError as exc:
        parser.error(f"--tasks: {exc}")
    if args.estimate:
        cost = estimate_cost(profile, threads=args.threads)
        environment = fingerprint([])
        print("\n".join(cost_lines(cost, f"{environment['cpu']} ({environment['cores']['usable']}"
                                          " cores)")))
        return 0
    try:
        if not args.report_only:
            command = [Path(sys.executable).name, "-m", "bench", "accuracy", *argv]
            with sigterm_raises():
                run_profile(profile, args.out,
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
