"""Sessions: tests and lint (more arrive with the bench, accuracy, claims and asv work).

torch is installed first from TORCH_SPEC so that no session pulls PyPI's default (CUDA)
build onto a CPU machine. A GPU user points it at a CUDA build, for example
``RNNBENCH_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" nox -s tests``.
"""

import os
import shlex

import nox

nox.options.default_venv_backend = "virtualenv"  # uv ignores the local wheel folder
nox.options.sessions = ["tests", "lint"]

TORCH_SPEC = shlex.split(os.environ.get("RNNBENCH_TORCH", "torch==2.13.0"))


def install_project(session, *extras):
    session.install(*TORCH_SPEC)
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec)


@nox.session
def tests(session):
    """Conformance and unit tests (CUDA variants skip without a GPU)."""
    install_project(session, "test")
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
    install_project(session)
    session.run("python", "-m", "bench", *session.posargs)


@nox.session
def accuracy(session):
    """Long-dependency accuracy sweeps (adding, copy, ...) for every trainable implementation."""
    install_project(session)
    session.run("python", "-m", "bench", "accuracy", *session.posargs)
