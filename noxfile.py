"""Sessions: tests and lint (the defaults), bench (the main job), accuracy, claims, asv,
dashboard, gate, microbench and minimums (the tests at the lowest declared dependencies).

torch is installed first from TORCH_SPEC so that no session pulls PyPI's default (CUDA)
build onto a CPU machine. A GPU user points it at a CUDA build, for example
``RNNBENCH_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" nox -s tests``.
"""

import contextlib
import json
import os
import platform
import shlex

import nox
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10; nox itself depends on tomli there
    import tomli as tomllib

nox.options.default_venv_backend = "virtualenv"  # uv ignores the local wheel folder
nox.options.sessions = ["tests", "lint"]

TORCH_SPEC = shlex.split(os.environ.get("RNNBENCH_TORCH", "torch==2.13.0"))


def install_project(session, *extras):
    session.install(*TORCH_SPEC)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def tests(session):
    """Conformance and unit tests, the peers and a local Dask cluster included (CUDA
    variants skip without a GPU)."""
    install_project(session, "test", "peers", "cluster")
    session.run("pytest", *session.posargs)


def dependency_floors():
    """{name: floor} of every runtime and `test` requirement, read from pyproject.toml.

    The floors are stated once, as the `>=` bounds there; a requirement without one is an error.
    """
    with open("pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    floors = {}
    for text in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        req = Requirement(text)
        lows = [s.version for s in req.specifier if s.operator == ">="]
        if len(lows) != 1:
            raise ValueError(f"pyproject.toml: {text!r} states no single '>=' floor")
        floors[canonicalize_name(req.name)] = lows[0]
    return floors


@nox.session
def minimums(session):
    """The tests at the lowest version of every dependency that pyproject.toml allows.

    torch comes from TORCH_SPEC, as in every session (never PyPI's CUDA build); its floor is
    that wheel. Every other dependency and test tool is pinned to its floor, the project goes
    in with --no-deps, `pip check` confirms its requirements hold, and each installed version
    is compared with its floor before pytest runs (arguments after `--` go to pytest).
    """
    floors = dependency_floors()
    # numba's cache sits beside the source, one index per function for every numba version:
    # the floor's numba and a newer one elsewhere (the tests session, a developer's venv) would
    # keep replacing each other's entries, so this session keeps its own.
    session.env["NUMBA_CACHE_DIR"] = os.path.join(session.create_tmp(), "numba-cache")
    session.install(*TORCH_SPEC)
    session.install(*(f"{name}=={floor}" for name, floor in floors.items() if name != "torch"))
    session.install("--no-deps", "-e", ".")
    session.run("pip", "check")
    script = ("import importlib.metadata as m, json, sys; "
              "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = session.run("python", "-c", script, *floors, silent=True)
    installed = json.loads(out.strip().splitlines()[-1])
    for name, floor in floors.items():
        session.log(f"{name} {installed[name]} (floor {floor})")
    wrong = {n: v for n, v in installed.items() if Version(Version(v).public) != Version(floors[n])}
    if wrong:
        session.error(f"not at their floors: {wrong}")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session):
    """ruff over the whole project."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")


@nox.session
def bench(session):
    """The main job: run a profile of cases, write results/<run>.json and the report.

    Arguments after `--` go to `python -m bench` (see `python -m bench --help`).
    """
    install_project(session, "peers")
    session.run("python", "-m", "bench", *session.posargs)


@nox.session
def accuracy(session):
    """Long-dependency accuracy sweeps (adding, copy, ...) for every trainable implementation;
    `-- --jobs N` or `-- --scheduler ADDRESS|local` to spread them."""
    install_project(session, "peers", "cluster")
    session.run("python", "-m", "bench", "accuracy", *session.posargs)


@nox.session
def claims(session):
    """The study notes' claims, each measured: results/CLAIMS.md (profile default) and JSON;
    `-- --jobs N` or `-- --scheduler ADDRESS|local` to spread them."""
    install_project(session, "cluster")
    session.run("python", "-m", "bench", "claims", *session.posargs)


#: One asv machine name everywhere, so that the history stays one series.
ASV_MACHINE = "rnnbench-cpu"


def _this_machine() -> list[str]:
    """`asv machine` options describing this machine, read here: with --yes alone asv keeps
    whatever an earlier entry said, or nothing, and the series would not say what ran it."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return ["--arch", platform.machine(), "--cpu", cpu, "--num_cpu", str(os.cpu_count()),
            "--os", f"{platform.system()} {platform.release()}", "--ram", str(ram)]


def _asv(session, *args):
    session.install("asv>=0.6,<0.7", "virtualenv")
    session.run("asv", "machine", "--machine", ASV_MACHINE, "--yes", *_this_machine())
    session.run("asv", *args)


@nox.session
def asv(session):
    """Record the speed and memory history in results/asv: the checked-out commit by default.

    The suite (benchmarks/asv) times this checkout's bench/workload.py call on each commit's
    code. Arguments after `--` are a commit range for `asv run`, e.g. `-- HEAD~5..HEAD` for the
    last five commits (commits already recorded are skipped).
    """
    commits = session.posargs or ["HEAD^!"]
    _asv(session, "run", "--machine", ASV_MACHINE, "--skip-existing-successful",
         "--show-stderr", *commits)


@nox.session
def dashboard(session):
    """Publish the asv dashboard and serve it on http://127.0.0.1:8080/ (Ctrl-C stops it).

    `-- --check` first checks, in headless Chromium, that every benchmark renders with data
    (tools/check_dashboard.py, screenshot in results/asv/dashboard.png; further arguments go
    to it, e.g. `--browser google-chrome`). `-- --no-serve` stops after publishing (and the
    check), as scripts want. `-- --offline` serves the dashboard's scripts from local copies
    (tools/asv_offline.py, npm needed once) instead of public CDNs; the check always does.
    Looking at the history needs no browser on this machine.
    """
    ours = ("--check", "--no-serve", "--offline")
    check = "--check" in session.posargs
    extra = [a for a in session.posargs if a not in ours]
    if extra and not check:
        session.error(f"unknown arguments {extra}: only {', '.join(ours)} "
                      "(and, with --check, tools/check_dashboard.py's options)")
    _asv(session, "publish")
    if "--offline" in session.posargs:
        session.run("python", "tools/asv_offline.py", ".asv/html")
    if check:
        session.run("python", "tools/check_dashboard.py", ".asv/html", *extra)
    if "--no-serve" not in session.posargs:
        # Not `asv preview`: it listens on every interface.
        session.log("dashboard on http://127.0.0.1:8080/ (Ctrl-C stops it); a blank page "
                    "without internet: `-- --offline`")
        session.run("python", "-m", "http.server", "8080", "--bind", "127.0.0.1",
                    "--directory", ".asv/html")


@nox.session
def gate(session):
    """Regression gate: this checkout against HEAD~1 (or `-- --base REF`) on this machine."""
    install_project(session)
    session.run("python", "-m", "bench", "gate", *session.posargs)


@nox.session
def microbench(session):
    """pytest-benchmark times bench/workload.py's call, for `--benchmark-compare-fail` gating.

    Arguments after `--` go to pytest, e.g. `-- --benchmark-autosave` on the base commit, then
    `-- --benchmark-compare --benchmark-compare-fail=median:10%`.
    """
    install_project(session, "test")
    session.run("pytest", "benchmarks/pytest", *session.posargs)
