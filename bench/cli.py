"""``python -m bench``: measure a profile of cases (the default action), or a subcommand.

Measuring writes ``results/bench/<run-id>/results.json`` after every case, then ``REPORT.md``
and ``figures/`` beside it. ``report`` regenerates those from a results file; ``accuracy``,
``claims`` and ``gate`` hand their arguments to ``bench.claims.accuracy``, ``bench.claims`` and
``bench.gate.run`` (each imported only when asked for).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import os
import sys
from pathlib import Path

#: Subcommands implemented elsewhere: name -> (module with main(argv) -> int, summary).
DELEGATED = {
    "accuracy": ("bench.claims.accuracy", "long-dependency accuracy sweeps of every trainable "
                                   "implementation"),
    "claims": ("bench.claims", "the study notes' claims, each measured"),
    "gate": ("bench.gate.run", "regression gate: this checkout against a base commit"),
}
REPORT_SUMMARY = "regenerate REPORT.md and figures/ from a results file"


def _list_of(kind, name: str | None = None):
    """An argparse type for a comma-separated list of `kind` values (`name` in errors)."""
    def parse(text: str):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {name or kind.__name__} values, got {text!r}"
            ) from None
    return parse


def _threads(text: str):
    """A core budget on the command line: a positive int or 'all'."""
    from bench.speed.cases import ALL_CORES
    if text == ALL_CORES:
        return text
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _epilog() -> str:
    from bench.speed.cases import PROFILES
    lines = ["subcommands (each has its own --help):",
             f"  report [RUN]    {REPORT_SUMMARY}"]
    lines += [f"  {name:<15} {summary} ({module})"
              for name, (module, summary) in DELEGATED.items()]
    lines += ["", "profiles:"]
    lines += [f"  {p.name:<15} {p.description}" for p in PROFILES.values()]
    lines += ["",
              "examples:",
              "  python -m bench --profile quick",
              "  python -m bench --profile quick --impl numba,torch --cell gru",
              "  python -m bench --T 100 --B 1,64 --H 256 --cell lstm,gru --mode training",
              "  python -m bench --config my-grid.toml     (format: pydoc bench.speed.cases)",
              "  python -m bench --resume results/bench/<run-id>",
              "  python -m bench report                    (the latest run)"]
    return "\n".join(lines)


def run_parser() -> argparse.ArgumentParser:
    from bench.speed.cases import DTYPES, MODES, PROFILES
    from bench.speed.results import RESULTS_DIR
    parser = argparse.ArgumentParser(
        prog="python -m bench", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Measure every registered recurrent-layer implementation over a profile "
                    "of cases; write results/bench/<run-id>/results.json, REPORT.md and "
                    "figures.", epilog=_epilog())
    what = parser.add_argument_group("what to measure")
    what.add_argument("--profile", choices=sorted(PROFILES),
                      help="named set of cases (default: default)")
    what.add_argument("--config", type=Path, metavar="FILE.toml",
                      help="a custom profile from a TOML file instead of --profile")
    for size, meaning in (("T", "sequence lengths"), ("B", "batch sizes"),
                          ("I", "input sizes (default: I = H)"), ("H", "hidden sizes")):
        what.add_argument(f"--{size}", type=_list_of(int), metavar="N[,N...]",
                          help=f"{meaning}: any of --T/--B/--I/--H makes a custom grid "
                               "(defaults T=100, B=64, H=256)")
    what.add_argument("--cell", type=_list_of(str), metavar="CELL[,...]",
                      help="cells: lstm, gru, rnn_tanh, rnn_relu (filters a profile)")
    what.add_argument("--mode", type=_list_of(str), metavar="MODE[,...]",
                      help=f"modes: {', '.join(MODES)} (forward; forward+backward)")
    what.add_argument("--dtype", type=_list_of(str), metavar="DTYPE[,...]",
                      help=f"dtypes: {', '.join(DTYPES)}")
    what.add_argument("--device", type=_list_of(str), metavar="DEVICE[,...]",
                      help="cpu, cuda (default: cpu, plus cuda where a GPU is visible)")
    what.add_argument("--impl", type=_list_of(str), metavar="NAME[,...]",
                      help="implementations, in every case (default: the profile's, which "
                           "may name more in some grids; every registered one for a custom "
                           "grid or the full profile)")
    what.add_argument("--baseline", default="torch",
                      help="implementation the ratios are taken against (default: torch)")
    what.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                      help="import MODULE first, e.g. one that registers your own "
                           "implementation with impls.register (repeatable)")
    how = parser.add_argument_group("how to measure")
    how.add_argument("--threads", type=_list_of(_threads, "positive int or 'all'"),
                     metavar="N|all[,...]",
                     help="core budgets: every implementation gets N threads (torch, numba, "
                          "and the BLAS under each) in a case; 'all' = the usable cores. "
                          "Sets a custom grid's budgets (default: all), filters a profile's")
    how.add_argument("--repeats", type=int, metavar="N",
                     help="exactly N timed calls per implementation and case (>= 3)")
    how.add_argument("--budget", type=float, metavar="SECONDS",
                     help="time budget per implementation and case (default: the profile's)")
    how.add_argument("--no-fresh-process", dest="fresh_process", action="store_false",
                     help="skip the fresh-process first-call and peak-memory measurement")
    how.add_argument("--seed", type=int, default=0, help="weights, inputs and bootstrap seed")
    out = parser.add_argument_group("results")
    out.add_argument("--results-dir", type=Path, default=RESULTS_DIR,
                     help=f"where run folders go (default: {RESULTS_DIR})")
    out.add_argument("--run-id", help="name of the run folder (default: <date>-<time>-<profile>)")
    out.add_argument("--resume", metavar="RUN",
                     help="continue a killed run (results file, run folder or run id) with "
                          "the plan stored in it")
    out.add_argument("--retry", type=_list_of(str, "failure reason"), metavar="REASON[,...]",
                     help="with --resume: measure again the groups of cases with an entry "
                          "that failed for one of these reasons (crashed, timeout, exception, "
                          "'out of memory', 'time budget', 'wrong output'; or failed: any). "
                          "Without it, a recorded failure is a result and is kept")
    out.add_argument("--no-report", dest="report", action="store_false",
                     help="write the results file only")
    out.add_argument("--list", action="store_true",
                     help="print the cases and which implementations run them, then exit")
    return parser


def _check_combinations(parser: argparse.ArgumentParser, args) -> None:
    sizes = [f"--{s}" for s in "TBIH" if getattr(args, s) is not None]
    sources = [name for name, given in (("--profile", args.profile), ("--config", args.config),
                                        (" ".join(sizes), sizes)) if given]
    if len(sources) > 1:
        parser.error(f"choose one source of cases, got {' and '.join(sources)}")
    if args.resume:
        given = sources + [f"--{k}" for k in ("cell", "mode", "dtype", "device", "impl",
                                              "repeats", "budget", "threads", "run_id")
                           if getattr(args, k) is not None]
        if given or args.plugin:
            parser.error("--resume continues the plan stored in the results file; drop "
                         f"{', '.join(given + ['--plugin'] * bool(args.plugin))}")
    if args.retry and not args.resume:
        parser.error("--retry goes with --resume RUN (it measures again what a run recorded "
                     "as failed)")
    if args.repeats is not None and args.repeats < 3:
        parser.error(f"--repeats must be at least 3, got {args.repeats}")
    if args.budget is not None and not (math.isfinite(args.budget) and args.budget > 0):
        parser.error(f"--budget must be a positive, finite number of seconds, got "
                     f"{args.budget}")


def _allow_numba_every_core() -> None:
    """numba's thread count can only be lowered at run time, below NUMBA_NUM_THREADS, which
    numba reads once on import: let it reach every usable core, and each case sets its own."""
    from bench.environment import usable_cores
    if "numba" not in sys.modules:
        os.environ.setdefault("NUMBA_NUM_THREADS", str(usable_cores()))


def _import_plugins(modules: list[str]) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"--plugin {module}: cannot import it ({exc})") from None
        except Exception as exc:  # a plugin's own bug: name it, not a traceback
            raise ValueError(f"--plugin {module}: importing it raised "
                             f"{type(exc).__name__}: {exc}") from None


def _new_plan(parser, args):
    import torch

    import impls
    from bench.environment import usable_cores
    from bench.speed import cases
    cores = usable_cores()
    budgets = None
    if args.threads is not None:
        budgets = [cores if t == cases.ALL_CORES else t for t in args.threads]
        if max(budgets) > cores:
            parser.error(f"--threads {max(budgets)} is more than the {cores} usable cores: "
                         "the implementations would fight over them")
    if args.config:
        profile = cases.load_profile(args.config)
    elif any(getattr(args, s) is not None for s in "TBIH"):
        profile = cases.grid_profile(T=args.T or [100], B=args.B or [64], H=args.H or [256],
                                     I=args.I, cells=args.cell, modes=args.mode,
                                     dtypes=args.dtype, devices=args.device,
                                     threads=budgets)
    else:
        profile = cases.PROFILES[args.profile or "default"]
    cuda = torch.cuda.is_available()
    selected = cases.select(profile.cases(cuda, cores), cells=args.cell, modes=args.mode,
                            dtypes=args.dtype, devices=args.device, threads=budgets)
    if args.impl:
        names, narrowed = args.impl, {}
    else:
        timed = profile.implementations_of(cuda, cores)
        names = sorted({name for case in selected for name in timed[case.key]})
        narrowed = {case.key: timed[case.key] for case in selected
                    if timed[case.key] != names}
    for name in names:
        impls.get(name)  # an unknown name lists the known ones
    if args.baseline not in names:
        parser.error(f"--baseline {args.baseline} is not among the implementations "
                     f"({', '.join(names)}); add it to --impl or choose another --baseline")
    timing = profile.timing
    if args.repeats is not None:
        timing = dataclasses.replace(timing, min_repeats=args.repeats, max_repeats=args.repeats)
    if args.budget is not None:
        timing = dataclasses.replace(timing, budget_s=args.budget)
    return cases.Plan(profile=profile.name, cases=selected, implementations=list(names),
                      baseline=args.baseline, timing=timing, fresh_process=args.fresh_process,
                      seed=args.seed, plugins=list(args.plugin), narrowed=narrowed)


def _print_plan(plan) -> None:
    from bench.speed.runner import case_unsupported
    print(f"profile {plan.profile}: {len(plan.cases)} cases, baseline {plan.baseline}, "
          f"{plan.timing.workers} worker processes per case")
    for case in plan.cases:
        runs, skipped = [], []
        for name in plan.implementations_of(case):
            reason = case_unsupported(name, case)
            (runs if reason is None else skipped).append(name if reason is None
                                                         else f"{name} ({reason})")
        na = f"; N/A: {', '.join(skipped)}" if skipped else ""
        print(f"  {case.key}: {', '.join(runs) or 'nothing'}{na}")


def _run(argv: list[str]) -> int:
    parser = run_parser()
    args = parser.parse_args(argv)
    _check_combinations(parser, args)
    from bench.speed import results
    _allow_numba_every_core()
    try:
        if args.resume:
            run_file = results.RunFile.load(results.find_run(args.resume, args.results_dir))
            plan = run_file.plan
            plugins = plan.plugins
            if args.retry:
                dropped = run_file.forget_failures(args.retry)
                print(f"retrying {len(dropped)} case(s) with an entry failed for "
                      f"{', '.join(args.retry)}", file=sys.stderr)
        else:
            run_file = None
            plugins = args.plugin
        _import_plugins(plugins)
        if run_file is None:
            plan = _new_plan(parser, args)
        else:
            import impls
            for name in plan.implementations:
                impls.get(name)  # a plugin that no longer registers it, say
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    if args.list:
        _print_plan(plan)
        return 0
    if run_file is None:
        run_id = args.run_id or results.new_run_id(plan.profile)
        try:
            run_file = results.RunFile.create(results.run_path(args.results_dir, run_id),
                                              run_id, plan)
        except ValueError as exc:
            parser.error(str(exc))
    return _measure(run_file, args.report, ["python", "-m", "bench", *argv])


def _measure(run_file, write_report: bool, command: list[str]) -> int:
    from bench.environment import fingerprint
    from bench.progress import Progress
    from bench.report import markdown as report
    from bench.speed import runner
    from bench.stopping import sigterm_raises
    environment = fingerprint(command)
    for warning in environment["contention"]:
        print(f"warning: {warning}; its timings are suspect (recorded with the results)",
              file=sys.stderr)
    progress = Progress(total=len(run_file.plan.cases), done=len(run_file.cases))
    try:
        with sigterm_raises():
            runner.run(run_file, environment, progress)
    except (KeyboardInterrupt, SystemExit):
        progress.close()
        print(f"\ninterrupted after {len(run_file.cases)} of {len(run_file.plan.cases)} "
              f"cases; continue with: python -m bench --resume {run_file.path}",
              file=sys.stderr)
        raise
    progress.close()
    failed = sum(e["status"] == "failed" for r in run_file.cases
                 for e in r["implementations"].values())
    print(f"results: {run_file.path}" + (f" ({failed} failed entries)" if failed else ""))
    if write_report:
        print(f"report:  {report.write(run_file.path)}")
    return 0


def _report(argv: list[str]) -> int:
    from bench.speed import results
    parser = argparse.ArgumentParser(prog="python -m bench report", description=REPORT_SUMMARY
                                     + " (the latest run when RUN is not given).")
    parser.add_argument("run", nargs="?", metavar="RUN",
                        help="results file, run folder or run id")
    parser.add_argument("--results-dir", type=Path, default=results.RESULTS_DIR,
                        help=f"where run folders are (default: {results.RESULTS_DIR})")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write REPORT.md and figures/ here (default: beside the results)")
    args = parser.parse_args(argv)
    from bench.report import markdown as report
    try:
        path = (results.find_run(args.run, args.results_dir) if args.run
                else results.latest_run(args.results_dir))
        print(f"report: {report.write(path, args.out)}")
    except ValueError as exc:
        parser.error(str(exc))
    return 0


def _delegate(name: str, argv: list[str]) -> int:
    module_name, _ = DELEGATED[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"python -m bench {name}: not available in this checkout (no module "
              f"{module_name})", file=sys.stderr)
        return 2
    return module.main(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        return _delegate(argv[0], argv[1:])
    if argv and argv[0] == "report":
        return _report(argv[1:])
    return _run(argv)
