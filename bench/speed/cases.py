"""What to measure: cases, the grids that generate them, and the named profiles.

A case is one layer shape and setting: cell, mode (the two calls of `bench.workload`),
sequence length T, batch B, input size I, hidden size H, dtype, device, the core budget
(threads) that every implementation gets in it: torch's threads, numba's, and the BLAS under
each; and the layer's stacking (layers, one or two directions) and sequence lengths (all T,
or drawn from a distribution such as "uniform:0.5", lengths in [T/2, T]). Cases that differ
only in their cell form a group, timed together (interleaved in the same worker processes),
so that a GRU/LSTM ratio is taken within one run. A profile is a union of grids (each grid a
cartesian product) plus the timing settings it is measured with. Built-in profiles are
sweeps around a base point, so that the report can draw throughput against H, against B, and
memory against T, each at all cores, and a few points on one core.

A custom profile comes from command-line flags (``--T 100 --B 1,64 --H 256``) or a TOML
file (``--config grid.toml``)::

    description = "GRU against LSTM at two batch sizes"
    cells = ["lstm", "gru"]              # default: lstm, gru, rnn_tanh
    modes = ["inference", "training"]    # default: both
    dtypes = ["float32"]                 # default: float32
    devices = ["cpu"]                    # default: cpu, plus cuda where a GPU is visible
    threads = ["all", 1]                 # core budgets (default: ["all"])

    [[grid]]                             # one or more; cases are the union of the grids
    T = [100]
    B = [1, 64]
    H = [256]
    # I = [256]                          # default: I = H
    # layers = [2]                       # nn's num_layers (default: [1])
    # bidirectional = [true]             # default: [false]
    # lengths = ["uniform:0.5"]          # default: every sequence T long
    # modes = ["training"]               # a grid may narrow cells / modes
    # threads = [1]                      # default: the profile's (["all"]: every usable core)
    # implementations = ["torch", "jax"] # default: the profile's (every registered one)

    [timing]                             # optional, any subset of `Timing`'s fields
    target_s = 0.5
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import impls
from bench.workload import DTYPES as TORCH_DTYPES
from bench.workload import MODES, lengths_fraction, lengths_label, sequence_lengths
from impls import CELLS

DTYPES = tuple(TORCH_DTYPES)
DEVICES = ("cpu", "cuda")
#: A core budget in a profile: a number of threads, or every usable core of the machine.
ALL_CORES = "all"
#: The cells a profile covers unless it names its own (rnn_relu only in `full`).
DEFAULT_CELLS = ("lstm", "gru", "rnn_tanh")

_CASE_FIELDS = ("cell", "mode", "T", "B", "I", "H", "dtype", "device", "threads")
#: Fields added later, with defaults: a results file written before them still loads.
_LAYER_FIELDS = {"layers": 1, "bidirectional": False, "lengths": None}


def _check_choice(what: str, value, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {list(allowed)}, got {value!r}")


def _check_positive_int(what: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive int, got {value!r}")


def _check_bool(what: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be true or false, got {value!r}")


def _check_lengths(what: str, value) -> None:
    if value is not None:
        try:
            lengths_fraction(value)
        except ValueError:
            raise ValueError(f"{what} must be None (every sequence T long) or 'uniform:F' "
                             f"with 0 < F <= 1, got {value!r}") from None


def _check_threads(what: str, value) -> None:
    if value != ALL_CORES:
        try:
            _check_positive_int(what, value)
        except ValueError:
            raise ValueError(f"{what} must be a positive int or {ALL_CORES!r}, "
                             f"got {value!r}") from None


@dataclass(frozen=True)
class Case:
    """One measured setting; `key` names it in results files.

    `layers` is nn's num_layers; `lengths` None (every sequence T long) or a distribution
    spec of `bench.workload.sequence_lengths`, such as "uniform:0.5".
    """

    cell: str
    mode: str
    T: int
    B: int
    I: int
    H: int
    dtype: str = "float32"
    device: str = "cpu"
    threads: int = 1
    layers: int = 1
    bidirectional: bool = False
    lengths: str | None = None

    def __post_init__(self) -> None:
        _check_choice("case cell", self.cell, CELLS)
        _check_choice("case mode", self.mode, MODES)
        for name in ("T", "B", "I", "H", "threads", "layers"):
            _check_positive_int(f"case {name}", getattr(self, name))
        _check_choice("case dtype", self.dtype, DTYPES)
        _check_choice("case device", self.device, DEVICES)
        _check_bool("case bidirectional", self.bidirectional)
        _check_lengths("case lengths", self.lengths)

    @property
    def key(self) -> str:
        return f"{self.cell}/{self.group}"

    @property
    def group(self) -> str:
        """The key without the cell: the cases timed together."""
        layer = "".join(f"/{in_key}" for in_key, _ in self._layer_parts())
        return (f"{self.mode}/T{self.T}/B{self.B}/I{self.I}/H{self.H}/{self.dtype}/"
                f"{self.device}/t{self.threads}{layer}")

    @property
    def variant(self) -> str:
        """What sets the layer apart from one layer, one direction, every sequence T long:
        e.g. "L2 bi", "len U[0.5T,T]"; "" for none of it."""
        return " ".join(label for _, label in self._layer_parts())

    def _layer_parts(self) -> list[tuple[str, str]]:
        """(in the key, for a reader) of each non-default layer field; keys of cases without
        any stay what they were before these fields existed."""
        parts = []
        if self.layers != 1:
            parts.append((f"L{self.layers}", f"L{self.layers}"))
        if self.bidirectional:
            parts.append(("bi", "bi"))
        if self.lengths is not None:
            parts.append((f"len-{self.lengths}", f"len {lengths_label(self.lengths)}"))
        return parts

    @property
    def tokens(self) -> int:
        """The real tokens of one call: the sum of the sequence lengths (T*B when all are T)."""
        return sum(sequence_lengths(self.lengths, self.T, self.B))

    def workload_args(self) -> dict:
        """The arguments of `bench.workload.Workload` after the implementation's name."""
        return {"cell": self.cell, "mode": self.mode, "T": self.T, "B": self.B, "I": self.I,
                "H": self.H, "layers": self.layers, "bidirectional": self.bidirectional,
                "lengths": self.lengths, "dtype": self.dtype, "device": self.device}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Case:
        """A case from its fields; the layer fields may be missing (older results files)."""
        if (not isinstance(data, dict) or not set(_CASE_FIELDS) <= set(data)
                or not set(data) <= set(_CASE_FIELDS) | set(_LAYER_FIELDS)):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"a case must have the fields {list(_CASE_FIELDS)} and may have "
                             f"{list(_LAYER_FIELDS)}, got {got}")
        return cls(**{**_LAYER_FIELDS, **data})


@dataclass(frozen=True)
class Timing:
    """How long and how often each implementation is measured in one case.

    Repeats aim at `target_s` of sampling per implementation, clamped to
    [`min_repeats`, `max_repeats`]. Warm-up runs until the medians of the last two windows
    of `warmup_window` calls agree within `warmup_tolerance`, or for at most `warmup_max_s`.
    `budget_s` bounds one implementation's whole time in one case (fresh-process
    measurement and in-run timing each); beyond it the case fails for that implementation.
    The samples come from `workers` processes, one after the other, each timing every
    implementation of the case group interleaved, so the spread between processes (memory
    layout, allocator state, clock frequency) shows in the intervals; repeats and the
    sampling target are totals over the workers.
    """

    target_s: float
    min_repeats: int
    max_repeats: int
    warmup_max_s: float
    budget_s: float
    warmup_window: int = 3
    warmup_tolerance: float = 0.05
    workers: int = 3

    def __post_init__(self) -> None:
        for name in ("target_s", "warmup_max_s", "budget_s", "warmup_tolerance"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise ValueError(f"timing {name} must be a positive finite number, got "
                                 f"{value!r}")
        for name in ("min_repeats", "max_repeats", "warmup_window", "workers"):
            _check_positive_int(f"timing {name}", getattr(self, name))
        if self.min_repeats < 3:
            raise ValueError("timing min_repeats must be at least 3 (a median and its "
                             f"confidence interval need them), got {self.min_repeats}")
        if self.max_repeats < self.min_repeats:
            raise ValueError(f"timing max_repeats ({self.max_repeats}) must be >= "
                             f"min_repeats ({self.min_repeats})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Timing:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown timing settings {sorted(unknown)}; "
                             f"known: {sorted(fields)}")
        return cls(**data)


@dataclass(frozen=True)
class Grid:
    """A cartesian product of sizes and layer settings; `I=None` ties the input size to H.

    `implementations` names those timed in the grid's cases (None: the profile's); a case
    that several grids produce times every implementation any of them names.
    """

    T: tuple[int, ...]
    B: tuple[int, ...]
    H: tuple[int, ...]
    I: tuple[int, ...] | None = None
    modes: tuple[str, ...] | None = None
    cells: tuple[str, ...] | None = None
    threads: tuple[int | str, ...] | None = None
    layers: tuple[int, ...] = (1,)
    bidirectional: tuple[bool, ...] = (False,)
    lengths: tuple[str | None, ...] = (None,)
    implementations: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.implementations is not None and not self.implementations:
            raise ValueError("grid implementations must name at least one, got none")
        for v in self.threads or ():
            _check_threads("grid threads entry", v)
        for name in ("T", "B", "H", "I", "layers", "bidirectional", "lengths"):
            values = getattr(self, name)
            if values is not None and not values:
                raise ValueError(f"grid {name} must list at least one value, got none")
        for name in ("T", "B", "H", "I", "layers"):
            for v in getattr(self, name) or ():
                _check_positive_int(f"grid {name} entry", v)
        for v in self.bidirectional:
            _check_bool("grid bidirectional entry", v)
        for v in self.lengths:
            _check_lengths("grid lengths entry", v)
        for name, allowed in (("modes", MODES), ("cells", CELLS)):
            for v in getattr(self, name) or ():
                _check_choice(f"grid {name} entry", v, allowed)

    def cases(self, cells: Iterable[str], modes: Iterable[str], dtypes: Iterable[str],
              devices: Iterable[str], threads: Iterable[int | str], cores: int) -> list[Case]:
        cells = [c for c in cells if self.cells is None or c in self.cells]
        modes = [m for m in modes if self.modes is None or m in self.modes]
        budgets = [cores if t == ALL_CORES else t for t in (self.threads or threads)]
        out = []
        for (threads_, device, dtype, mode, T, B, H, layers, bidirectional, lengths,
             cell) in itertools.product(budgets, devices, dtypes, modes, self.T, self.B, self.H,
                                        self.layers, self.bidirectional, self.lengths, cells):
            for I in (self.I or (H,)):
                out.append(Case(cell, mode, T, B, I, H, dtype, device, threads_, layers,
                                bidirectional, lengths))
        return out


@dataclass(frozen=True)
class Profile:
    """A named set of grids and the timing they are measured with.

    `devices=None` means cpu, plus cuda where a GPU is visible. `implementations=None`
    means every registered one; the timed profiles name theirs, so that registering a peer
    does not push them past the time they promise.
    """

    name: str
    description: str
    grids: tuple[Grid, ...]
    timing: Timing
    cells: tuple[str, ...] = DEFAULT_CELLS
    modes: tuple[str, ...] = MODES
    dtypes: tuple[str, ...] = ("float32",)
    devices: tuple[str, ...] | None = None
    threads: tuple[int | str, ...] = (ALL_CORES,)
    implementations: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.grids:
            raise ValueError(f"profile {self.name!r} needs at least one grid")
        if not self.threads:
            raise ValueError(f"profile {self.name!r} needs at least one threads entry")
        for v in self.threads:
            _check_threads(f"profile {self.name!r} threads entry", v)
        for what, values, allowed in (("cells", self.cells, CELLS), ("modes", self.modes, MODES),
                                      ("dtypes", self.dtypes, DTYPES),
                                      ("devices", self.devices or (), DEVICES)):
            for v in values:
                _check_choice(f"profile {self.name!r} {what} entry", v, allowed)

    def cases(self, cuda_available: bool, cores: int) -> list[Case]:
        """The union of the grids' cases, first occurrence first; "all" threads = `cores`."""
        return [case for case, _ in self._timed(cuda_available, cores).values()]

    def implementations_of(self, cuda_available: bool, cores: int) -> dict[str, list[str]]:
        """{case key: the implementations its grids name, sorted}."""
        return {key: names for key, (_, names) in self._timed(cuda_available, cores).items()}

    def _timed(self, cuda_available: bool, cores: int) -> dict[str, tuple[Case, list[str]]]:
        devices = self.devices or (("cpu", "cuda") if cuda_available else ("cpu",))
        seen: dict[str, tuple[Case, set[str]]] = {}
        for grid in self.grids:
            names = grid.implementations or self.implementations or impls.names()
            for case in grid.cases(self.cells, self.modes, self.dtypes, devices, self.threads,
                                   cores):
                seen.setdefault(case.key, (case, set()))[1].update(names)
        return {key: (case, sorted(names)) for key, (case, names) in seen.items()}


QUICK_TIMING = Timing(target_s=0.1, min_repeats=6, max_repeats=30, warmup_max_s=0.2,
                      budget_s=20.0)
DEFAULT_TIMING = Timing(target_s=0.25, min_repeats=6, max_repeats=60, warmup_max_s=0.3,
                        budget_s=60.0)
FULL_TIMING = Timing(target_s=2.0, min_repeats=20, max_repeats=300, warmup_max_s=3.0,
                     budget_s=300.0, workers=5)
#: The single-core points of the built-in profiles: the batch sizes of serving (1) and
#: training (64) at the base shape.
ONE_CORE = (1,)
#: The cells kernels are chosen for; the simple RNN is measured at each base point only.
GATED = ("lstm", "gru")
#: The largest shapes are timed forward only: their training calls take seconds each, and the
#: profile must stay within its 15 minutes.
INFERENCE = ("inference",)
#: Variable-length batches: lengths uniform in [T/2, T].
HALF_TO_FULL = "uniform:0.5"

#: The implementations the built-in profiles time in every case: the reference, PyTorch's
#: two kernels, the scripted loop and numba.
BUILT_IN = ("reference", "torch", "torch-native", "scripted", "numba")
#: The compilers and runtimes engineers pick today. Each compiles or exports per process (a
#: first call of up to seconds), so the default profile times them where its two questions
#: are asked, batch-1 latency and B=64 throughput at the base shape; --impl adds them
#: elsewhere.
PEERS = ("compiled", "compiled-nn", "jax", "onnxruntime", "openvino")
#: The peers of the default profile: `compiled-nn` is left to --impl, since Dynamo breaks
#: the graph at nn's RNN modules and runs nn's own kernel eagerly (at B=64 it measured 0.97
#: to 1.05 of torch's time here), so it adds a minute and no kernel.
DEFAULT_PEERS = tuple(p for p in PEERS if p != "compiled-nn")

PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile(
        name="quick",
        description="two-point sweeps of H, B and T around T=50, B=16, I=H=128, one "
                    "single-core point, and a 2-layer bidirectional variable-length forward: "
                    "a smoke run of every table and figure (about 3 minutes on 2 cores)",
        grids=(Grid(T=(50,), B=(16,), H=(128,)),
               Grid(T=(50,), B=(16,), H=(256,), cells=GATED),
               Grid(T=(50,), B=(1,), H=(128,), cells=GATED),
               Grid(T=(100,), B=(16,), H=(128,), modes=("training",), cells=GATED),
               Grid(T=(50,), B=(16,), H=(128,), threads=ONE_CORE, cells=GATED),
               Grid(T=(50,), B=(16,), H=(128,), cells=GATED, modes=INFERENCE, layers=(2,),
                    bidirectional=(True,), lengths=(HALF_TO_FULL,))),
        timing=QUICK_TIMING,
        implementations=BUILT_IN,
    ),
    Profile(
        name="default",
        description="LSTM and GRU around T=100, B=64, I=H=256 on all cores: B=1 and 64 with "
                    "the peers (torch.compile, JAX, ONNX Runtime, OpenVINO), H 64 and 512 "
                    "forward (H=512 is the shape of PyTorch's RNN benchmarks, "
                    "benchmarks/fastrnns), T 100 and 1000 in training; B=1 on one core; a "
                    "2-layer bidirectional layer (T=50, B=32, I=H=256) and lengths uniform in "
                    "[T/2, T] at the base point (under 15 minutes on 2 cores)",
        grids=(Grid(T=(100,), B=(1, 64), H=(256,), implementations=BUILT_IN + DEFAULT_PEERS),
               Grid(T=(100,), B=(64,), H=(64, 512), modes=INFERENCE),
               Grid(T=(100, 1000), B=(32,), H=(128,), modes=("training",)),
               Grid(T=(100,), B=(1,), H=(256,), threads=ONE_CORE),
               Grid(T=(50,), B=(32,), H=(256,), layers=(2,), bidirectional=(True,)),
               Grid(T=(100,), B=(64,), H=(256,), lengths=(HALF_TO_FULL,))),
        cells=GATED,
        timing=DEFAULT_TIMING,
        implementations=BUILT_IN,
    ),
    Profile(
        name="full",
        description="wider sweeps, every cell, float32 and float64, on all cores and on one; "
                    "1 and 2 layers in one and two directions; lengths uniform in [T/2, T] "
                    "(hours on 2 cores)",
        grids=(Grid(T=(100,), B=(64,), H=(32, 64, 128, 256, 512, 1024)),
               Grid(T=(100,), B=(1, 4, 16, 32, 64, 128, 256), H=(256,)),
               Grid(T=(50, 100, 300, 1000, 2000), B=(32,), H=(128,)),
               Grid(T=(100,), B=(64,), H=(256,), I=(64, 1024)),
               Grid(T=(100,), B=(32,), H=(256,), layers=(1, 2), bidirectional=(False, True)),
               Grid(T=(100,), B=(64,), H=(256,), lengths=(HALF_TO_FULL,))),
        timing=FULL_TIMING,
        cells=CELLS,
        dtypes=("float32", "float64"),
        threads=(ALL_CORES, 1),
    ),
    Profile(
        name="numba-targets",
        description="the cases of the numba kernels' targets (bench/report/targets.py): "
                    "I=H=256, T=100, B=1 and 64 on all cores and on one; B=1 at I=H=512 on "
                    "all cores; training memory at T=1000, B=32, I=H=128",
        grids=(Grid(T=(100,), B=(1, 64), H=(256,), threads=(ALL_CORES, 1)),
               Grid(T=(100,), B=(1,), H=(512,)),
               Grid(T=(1000,), B=(32,), H=(128,), modes=("training",))),
        timing=DEFAULT_TIMING,
        cells=("lstm", "gru"),
        devices=("cpu",),
        implementations=BUILT_IN,
    ),
)}


def select(cases: Sequence[Case], *, cells=None, modes=None, dtypes=None,
           devices=None, threads=None) -> list[Case]:
    """The cases matching every given filter (None = no filter); none left is an error."""
    filters = {"cell": cells, "mode": modes, "dtype": dtypes, "device": devices,
               "threads": threads}
    for name, allowed in (("cell", CELLS), ("mode", MODES), ("dtype", DTYPES),
                          ("device", DEVICES)):
        for v in filters[name] or ():
            _check_choice(f"--{name}", v, allowed)
    kept = [c for c in cases
            if all(values is None or getattr(c, name) in values
                   for name, values in filters.items())]
    if not kept:
        given = {k: list(v) for k, v in filters.items() if v is not None}
        raise ValueError(f"no case matches the filters {given}")
    return kept


def grid_profile(*, T: Sequence[int], B: Sequence[int], H: Sequence[int],
                 I: Sequence[int] | None = None, cells: Sequence[str] | None = None,
                 modes: Sequence[str] | None = None, dtypes: Sequence[str] | None = None,
                 devices: Sequence[str] | None = None,
                 threads: Sequence[int | str] | None = None,
                 timing: Timing = DEFAULT_TIMING) -> Profile:
    """A one-grid profile, as the command line's size flags build it."""
    return Profile(
        name="custom", description="a grid given on the command line",
        grids=(Grid(T=tuple(T), B=tuple(B), H=tuple(H), I=tuple(I) if I else None),),
        timing=timing, cells=tuple(cells or DEFAULT_CELLS), modes=tuple(modes or MODES),
        dtypes=tuple(dtypes or ("float32",)), devices=tuple(devices) if devices else None,
        threads=tuple(threads or (ALL_CORES,)))


_TOML_KEYS = {"description", "cells", "modes", "dtypes", "devices", "threads", "grid",
              "timing"}
_GRID_KEYS = {"T", "B", "H", "I", "modes", "cells", "threads", "layers", "bidirectional",
              "lengths", "implementations"}


def _toml_list(where: str, value) -> tuple:
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list, got {type(value).__name__} {value!r}")
    return tuple(value)


def load_profile(path: str | Path) -> Profile:
    """A profile from a TOML file (format in the module docstring)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    unknown = set(data) - _TOML_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; known: {sorted(_TOML_KEYS)}")
    grids_data = data.get("grid")
    if not isinstance(grids_data, list) or not grids_data:
        raise ValueError(f"{path}: needs at least one [[grid]] table with T, B and H lists")
    grids = []
    for n, g in enumerate(grids_data, 1):
        where = f"{path}: grid {n}"
        unknown = set(g) - _GRID_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: "
                             f"{sorted(_GRID_KEYS)}")
        missing = {"T", "B", "H"} - set(g)
        if missing:
            raise ValueError(f"{where}: missing {sorted(missing)}")
        fields = {k: _toml_list(f"{where} {k}", v) for k, v in g.items()}
        try:
            grids.append(Grid(**fields))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    timing_data = data.get("timing", {})
    if not isinstance(timing_data, dict):
        raise ValueError(f"{path}: [timing] must be a table, got {timing_data!r}")
    top = {k: _toml_list(f"{path}: {k}", data[k])
           for k in ("cells", "modes", "dtypes", "devices", "threads") if k in data}
    try:
        timing = Timing.from_dict({**DEFAULT_TIMING.to_dict(), **timing_data})
        return Profile(name=path.stem, description=data.get("description",
                                                            f"grid from {path}"),
                       grids=tuple(grids), timing=timing, **top)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


@dataclass
class Plan:
    """Everything a run needs, stored in its results file so that `--resume` can continue.

    `implementations` are every implementation of the run; `narrowed` maps the key of a case
    that times only some of them to those (a profile's grids may name their own).
    """

    profile: str
    cases: list[Case]
    implementations: list[str]
    baseline: str
    timing: Timing
    fresh_process: bool = True
    seed: int = 0
    plugins: list[str] = field(default_factory=list)
    narrowed: dict[str, list[str]] = field(default_factory=dict)

    def implementations_of(self, case: Case) -> list[str]:
        """The implementations timed in `case`."""
        return self.narrowed.get(case.key, self.implementations)

    def to_dict(self) -> dict:
        return {"profile": self.profile, "cases": [c.to_dict() for c in self.cases],
                "implementations": list(self.implementations), "baseline": self.baseline,
                "timing": self.timing.to_dict(), "fresh_process": self.fresh_process,
                "seed": self.seed, "plugins": list(self.plugins),
                "narrowed": {k: list(v) for k, v in self.narrowed.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        """A plan from its fields; `narrowed` may be missing (older results files)."""
        return cls(profile=data["profile"], cases=[Case.from_dict(c) for c in data["cases"]],
                   implementations=list(data["implementations"]), baseline=data["baseline"],
                   timing=Timing.from_dict(data["timing"]),
                   fresh_process=data["fresh_process"], seed=data["seed"],
                   plugins=list(data["plugins"]),
                   narrowed={k: list(v) for k, v in data.get("narrowed", {}).items()})


def groups(cases: Sequence[Case]) -> list[list[Case]]:
    """`cases` grouped by `Case.group` (cases that differ only in their cell), in order."""
    by_group: dict[str, list[Case]] = {}
    for case in cases:
        by_group.setdefault(case.group, []).append(case)
    return list(by_group.values())
