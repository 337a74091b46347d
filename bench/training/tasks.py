"""Synthetic long-dependency tasks, generated from a seed (the machines have no internet).

Every task draws batches from a `torch.Generator`, so a seed fixes the data exactly, and
knows its own loss, its metrics, the loss of the best model that remembers nothing (the
baseline a network must beat to show it learned the dependency) and its success rule.

    task = make_task("adding", T=100)
    batch = task.sample(64, torch.Generator().manual_seed(0))
    batch.inputs          # (steps, B, task.input_size), float32, time-major
    task.loss(outputs, batch)

A task is either *per sequence* (one output read at each sequence's last step: adding,
temporal order) or *per step* (an output at every step: copy, Reber). Sequences of random
length are padded after their end with zeros; `batch.lengths` says where each one ends, and
a causal model's outputs at the padding are never read.

The claims catalogue (`bench.claims.CLAIMS`; D1-D4 and the trained claims of groups C, E
and F) says which claim uses which task and gives the published figures they are held
against.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Batch:
    """One generated batch.

    inputs: (steps, B, input_size) float32. targets: (B,) float32 for regression, (B,) int64
    for a class per sequence, (steps, B) int64 for a class per step. lengths: (B,) int64,
    the valid steps of each sequence. legal: (steps, B, output_size) bool, the symbols the
    task accepts at each step (Reber only, else None).
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor
    legal: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[1]


def _check_int(task: str, arg: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{task}: argument {arg!r} must be an int >= {minimum}, got {value!r}")
    return value


def _check_sample_args(task: str, batch_size, generator) -> None:
    _check_int(task, "batch_size", batch_size, 1)
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{task}: argument 'generator' must be a torch.Generator, "
            f"got {type(generator).__name__}"
        )


def _uniform_int(low: torch.Tensor | int, high: torch.Tensor | int, size: int,
                 generator: torch.Generator) -> torch.Tensor:
    """Integers uniform in [low, high] inclusive, elementwise bounds allowed."""
    low = torch.as_tensor(low, dtype=torch.int64)
    high = torch.as_tensor(high, dtype=torch.int64)
    u = torch.rand(size, generator=generator, dtype=torch.float64)
    return low + (u * (high - low + 1)).long().clamp(max=high - low)


class Task(abc.ABC):
    """What the trainer needs from a task; each subclass sets the attributes in __init__."""

    name: str
    input_size: int
    output_size: int
    #: True: an output at every step; False: one output, read at each sequence's last step.
    per_step: bool
    #: Sequence length the task is parametrised by (None where the task has no T).
    T: int | None
    #: One sentence: the success rule, for reports.
    success_rule: str

    @abc.abstractmethod
    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """A batch drawn from `generator` only, so a seed fixes it."""

    @abc.abstractmethod
    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean loss; outputs (B, output_size) per sequence, (steps, B, output_size) per step."""

    @abc.abstractmethod
    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        """Held-out numbers: always 'loss', and 'accuracy' where the task defines one."""

    @abc.abstractmethod
    def baseline_loss(self, batch: Batch | None = None) -> float:
        """Loss of the best predictor that does not learn the long dependency: on `batch`
        when given (so a held-out set is compared with its own baseline), else expected."""

    @abc.abstractmethod
    def solved(self, metrics: dict[str, float]) -> bool:
        """Whether held-out `metrics` meet the task's success rule."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """The parameters that define the task, for result files."""


# -- adding problem ------------------------------------------------------------------------


class AddingProblem(Task):
    """Two marked values in a long sequence; output their sum at the end.

    form="arjovsky2016" (default): T steps of (value ~ U[0,1], marker); one marker in each
    half; target = the sum of the two marked values; MSE. Predicting the mean 1 always gives
    MSE = Var(X1 + X2) = 2/12 = 1/6: that is the baseline. Solved: held-out MSE < 0.01.

    form="hochreiter1997" (Hochreiter & Schmidhuber 1997, experiment 4): length random in
    [T, T + T//10]; values ~ U[-1,1]; X1 marked among the first ten pairs, X2 among the
    first T//2 - 1 still unmarked ones; marker -1 on the first and last pairs unless marked;
    a marked first pair has its value set to 0; target 0.5 + (X1 + X2)/4. A sequence is
    correct if |error| < 0.04; solved when every held-out sequence is correct.
    """

    FORMS = ("arjovsky2016", "hochreiter1997")
    CORRECT_ERROR_1997 = 0.04
    SOLVED_MSE_2016 = 0.01

    def __init__(self, T: int, form: str = "arjovsky2016"):
        if form not in self.FORMS:
            raise ValueError(f"adding: argument 'form' must be one of {self.FORMS}, got {form!r}")
        self.form = form
        self.name = "adding" if form == "arjovsky2016" else "adding1997"
        # 1997: the window for X2 (first T//2 - 1 pairs) must contain the first ten pairs.
        minimum = 2 if form == "arjovsky2016" else 22
        self.T = _check_int(self.name, "T", T, minimum)
        self.input_size = 2
        self.output_size = 1
        self.per_step = False
        self.success_rule = (
            f"held-out MSE < {self.SOLVED_MSE_2016}" if form == "arjovsky2016" else
            f"every held-out sequence within |error| < {self.CORRECT_ERROR_1997}"
        )

    def describe(self) -> dict:
        return {"task": self.name, "T": self.T, "form": self.form}

    def sample(self, batch_size, generator):
        _check_sample_args(self.name, batch_size, generator)
        if self.form == "arjovsky2016":
            return self._sample_2016(batch_size, generator)
        return self._sample_1997(batch_size, generator)

    def _sample_2016(self, B, g):
        T, half = self.T, self.T // 2
        values = torch.rand(T, B, generator=g)
        first = _uniform_int(0, half - 1, B, g)
        second = _uniform_int(half, T - 1, B, g)
        columns = torch.arange(B)
        markers = torch.zeros(T, B)
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        targets = values[first, columns] + values[second, columns]
        lengths = torch.full((B,), T, dtype=torch.int64)
        return Batch(torch.stack([values, markers], dim=-1), targets, lengths)

    def _sample_1997(self, B, g):
        T = self.T
        steps = T + T // 10
        lengths = _uniform_int(T, steps, B, g)
        values = torch.rand(steps, B, generator=g) * 2 - 1
        window = T // 2 - 1
        first = _uniform_int(0, 9, B, g)
        # X2: uniform over the window's other window-1 positions.
        second = _uniform_int(0, window - 2, B, g)
        second = second + (second >= first).long()
        columns = torch.arange(B)
        valid = torch.arange(steps).unsqueeze(1) < lengths
        values = values * valid
        markers = torch.zeros(steps, B)
        markers[0, :] = -1.0
        markers[lengths - 1, columns] = -1.0
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        values[0, markers[0] == 1.0] = 0.0
        targets = 0.5 + (values[first, columns] + values[second, columns]) / 4
        return Batch(torch.stack([values, markers], dim=-1), targets, lengths)

    def loss(self, outputs, batch):
        return F.mse_loss(outputs.squeeze(-1), batch.targets)

    def metrics(self, outputs, batch):
        error = outputs.squeeze(-1).double() - batch.targets.double()
        result = {"loss": float((error ** 2).mean())}
        if self.form == "hochreiter1997":
            result["accuracy"] = float((error.abs() < self.CORRECT_ERROR_1997).double().mean())
        return result

    def baseline_loss(self, batch=None):
        """Predicting the target's mean (1 in the 2016 form, 0.5 in the 1997 form)."""
        mean = 1.0 if self.form == "arjovsky2016" else 0.5
        if batch is not None:
            return float(((batch.targets.double() - mean) ** 2).mean())
        if self.form == "arjovsky2016":
            return 1.0 / 6.0
        # MSE = (E[X1^2] + E[X2^2]) / 16, with E[X^2] = 1/3 for a U[-1,1] value and 0 when
        # the marked pair is the first one (probability p0).
        window = self.T // 2 - 1
        p0 = 1 / 10 + (9 / 10) / (window - 1)
        return (2 / 3 - p0 / 3) / 16

    def solved(self, metrics):
        if self.form == "arjovsky2016":
            return metrics["loss"] < self.SOLVED_MSE_2016
        return metrics["accuracy"] == 1.0


# -- copy memory ---------------------------------------------------------------------------


class CopyMemory(Task):
    """Remember `n_symbols` symbols over T blanks, then write them out (Arjovsky et al. 2016).

    Input (T + 2*n_symbols steps): the symbols (categories 1..n_categories), T-1 blanks (0),
    the delimiter (n_categories + 1), n_symbols blanks; one-hot. Target: blanks for the
    first T + n_symbols steps, then the symbols. Cross-entropy averaged over every step.
    Remembering nothing, the best is blanks then a uniform guess:
    n_symbols * ln(n_categories) / (T + 2*n_symbols), i.e. 10 ln 8 / (T + 20).
    Accuracy: the fraction of recalled symbols right (argmax). Solved: accuracy >= 0.99
    (the 2016 paper reports loss curves only; this threshold is this suite's).
    """

    SOLVED_ACCURACY = 0.99

    def __init__(self, T: int, n_symbols: int = 10, n_categories: int = 8):
        self.name = "copy"
        self.T = _check_int(self.name, "T", T, 1)
        self.n_symbols = _check_int(self.name, "n_symbols", n_symbols, 1)
        self.n_categories = _check_int(self.name, "n_categories", n_categories, 2)
        self.input_size = n_categories + 2    # blank, categories, delimiter
        self.output_size = n_categories + 1   # blank, categories
        self.per_step = True
        self.success_rule = f"recalled-symbol accuracy >= {self.SOLVED_ACCURACY}"

    @property
    def steps(self) -> int:
        return self.T + 2 * self.n_symbols

    def describe(self) -> dict:
        return {"task": self.name, "T": self.T, "n_symbols": self.n_symbols,
                "n_categories": self.n_categories}

    def sample(self, batch_size, generator):
        _check_sample_args(self.name, batch_size, generator)
        S, B = self.n_symbols, batch_size
        symbols = torch.randint(1, self.n_categories + 1, (S, B), generator=generator)
        tokens = torch.zeros(self.steps, B, dtype=torch.int64)
        tokens[:S] = symbols
        tokens[self.T + S - 1] = self.n_categories + 1
        targets = torch.zeros(self.steps, B, dtype=torch.int64)
        targets[-S:] = symbols
        inputs = F.one_hot(tokens, self.input_size).float()
        lengths = torch.full((B,), self.steps, dtype=torch.int64)
        return Batch(inputs, targets, lengths)

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs.reshape(-1, self.output_size), batch.targets.reshape(-1))

    def metrics(self, outputs, batch):
        recalled = outputs[-self.n_symbols:].argmax(-1) == batch.targets[-self.n_symbols:]
        return {"loss": float(self.loss(outputs.double(), batch)),
                "accuracy": float(recalled.double().mean())}

    def baseline_loss(self, batch=None):
        return self.n_symbols * math.log(self.n_categories) / self.steps

    def solved(self, metrics):
        return metrics["accuracy"] >= self.SOLVED_ACCURACY


# -- embedded Reber grammar ----------------------------------------------------------------

REBER_SYMBOLS = "BTPSXVE"

#: The Reber grammar as a state machine: state -> ((symbol, next state), ...); every
#: branch is taken with probability 1/2; state 5 emits E and ends the inner string.
_REBER_EDGES = {
    0: (("T", 1), ("P", 2)),
    1: (("S", 1), ("X", 3)),
    2: (("T", 2), ("V", 4)),
    3: (("X", 2), ("S", 5)),
    4: (("P", 3), ("V", 5)),
    5: (("E", "close"),),
}


def _embedded_moves(state) -> dict:
    """Moves of the embedded grammar: B, T|P, B, the inner machine, E, the same T|P, E."""
    phase, outer = state
    if phase == "start":
        return {"B": ("outer", None)}
    if phase == "outer":
        return {"T": ("open", "T"), "P": ("open", "P")}
    if phase == "open":
        return {"B": (0, outer)}
    if phase == "close":
        return {outer: ("end", outer)}
    if phase == "end":
        return {"E": ("done", outer)}
    if phase == "done":
        return {}
    return {symbol: (nxt, outer) for symbol, nxt in _REBER_EDGES[phase]}


def reber_legal_next(prefix: str) -> frozenset[str]:
    """The symbols that may follow `prefix` in an embedded Reber string."""
    state = ("start", None)
    for position, symbol in enumerate(prefix):
        moves = _embedded_moves(state)
        if symbol not in moves:
            raise ValueError(
                f"reber: {prefix!r} is not a prefix of an embedded Reber string "
                f"(symbol {position} is {symbol!r}; expected one of {sorted(moves)})"
            )
        state = moves[symbol]
    return frozenset(_embedded_moves(state))


class _Coins:
    """Fair coin flips drawn from a generator in blocks (one torch call per block)."""

    def __init__(self, generator: torch.Generator, block: int = 4096):
        self.generator, self.block, self.flips = generator, block, []

    def flip(self) -> int:
        if not self.flips:
            self.flips = torch.randint(0, 2, (self.block,), generator=self.generator).tolist()
        return self.flips.pop()


def _reber_string(coins: _Coins) -> str:
    """Walk the machine, taking each two-way branch by a coin flip."""
    state, symbols = ("start", None), []
    while moves := _embedded_moves(state):
        options = sorted(moves)
        symbol = options[coins.flip()] if len(options) == 2 else options[0]
        symbols.append(symbol)
        state = moves[symbol]
    return "".join(symbols)


class EmbeddedReber(Task):
    """Next-symbol prediction on embedded Reber strings (7 symbols, one-hot).

    The string is B, T or P, an inner Reber string, the same T or P, E. Input: each symbol
    but the last; target: the symbol after it; cross-entropy over the valid steps. A string
    is correct when, at every step, the top-k outputs are exactly the k legal next symbols.
    The long dependency is the second-to-last symbol, which repeats the second: a model
    that learned the inner grammar but not that gets it right half the time, so the
    baseline accuracy is 1/2 and the baseline loss is the ideal one plus ln 2 per string.
    Solved: every held-out string correct (Hochreiter & Schmidhuber 1997's criterion).
    """

    def __init__(self):
        self.name = "reber"
        self.T = None
        self.input_size = len(REBER_SYMBOLS)
        self.output_size = len(REBER_SYMBOLS)
        self.per_step = True
        self.success_rule = "every held-out string predicted correctly at every step"

    def describe(self) -> dict:
        return {"task": self.name}

    def sample(self, batch_size, generator):
        _check_sample_args(self.name, batch_size, generator)
        coins = _Coins(generator)
        strings = [_reber_string(coins) for _ in range(batch_size)]
        steps = max(len(s) for s in strings) - 1
        index = {symbol: k for k, symbol in enumerate(REBER_SYMBOLS)}
        tokens = torch.zeros(steps + 1, batch_size, dtype=torch.int64)
        legal = torch.zeros(steps, batch_size, len(REBER_SYMBOLS), dtype=torch.bool)
        for b, string in enumerate(strings):
            tokens[: len(string), b] = torch.tensor([index[s] for s in string])
            state = ("start", None)
            for t, symbol in enumerate(string[:-1]):
                state = _embedded_moves(state)[symbol]
                for legal_symbol in _embedded_moves(state):
                    legal[t, b, index[legal_symbol]] = True
        lengths = torch.tensor([len(s) - 1 for s in strings], dtype=torch.int64)
        inputs = F.one_hot(tokens[:-1], self.input_size).float()
        inputs = inputs * (torch.arange(steps).view(-1, 1, 1) < lengths.view(1, -1, 1))
        return Batch(inputs, tokens[1:], lengths, legal)

    def _valid(self, batch):
        return torch.arange(batch.inputs.shape[0]).unsqueeze(1) < batch.lengths

    def loss(self, outputs, batch):
        valid = self._valid(batch)
        return F.cross_entropy(outputs[valid], batch.targets[valid])

    def metrics(self, outputs, batch):
        valid = self._valid(batch)
        # The top-k outputs are the k legal symbols iff every legal output beats every
        # illegal one.
        low_legal = outputs.masked_fill(~batch.legal, math.inf).amin(-1)
        high_illegal = outputs.masked_fill(batch.legal, -math.inf).amax(-1)
        step_ok = (low_legal > high_illegal) | ~valid
        return {"loss": float(self.loss(outputs.double(), batch)),
                "accuracy": float(step_ok.all(0).double().mean())}

    def baseline_loss(self, batch=None):
        if batch is None:
            raise ValueError("reber: the baseline depends on the strings; pass the batch")
        branches = (batch.legal.sum(-1) == 2).sum()
        # Ideal: ln 2 at each two-way branch; without long memory, ln 2 more per string.
        nats = (branches + batch.batch_size) * math.log(2)
        return float(nats / batch.lengths.sum())

    def solved(self, metrics):
        return metrics["accuracy"] == 1.0


# -- temporal order ------------------------------------------------------------------------

ORDER_SYMBOLS = "EBabcdXY"


class TemporalOrder(Task):
    """Classify the order of two X/Y symbols hidden among distractors (1997, experiment 6a).

    Symbols E, B, a, b, c, d, X, Y one-hot. The sequence starts with E and ends with the
    trigger B; the rest are random distractors a-d except at t1 and t2, which are X or Y.
    At T=100 exactly the 1997 setting: length in [100, 110], t1 in [10, 20], t2 in [50, 60];
    for other T the same fractions: length [T, T + T//10], t1 [T//10, T//5],
    t2 [T//2, T//2 + T//10]. Classes XX, XY, YX, YY (Q, R, S, U), read at the trigger;
    cross-entropy. Baseline: ln 4, accuracy 1/4. Solved: every held-out sequence right.
    """

    CLASSES = ("XX", "XY", "YX", "YY")

    def __init__(self, T: int = 100):
        self.name = "temporal_order"
        self.T = _check_int(self.name, "T", T, 20)
        self.input_size = len(ORDER_SYMBOLS)
        self.output_size = len(self.CLASSES)
        self.per_step = False
        self.success_rule = "every held-out sequence classified correctly"

    def describe(self) -> dict:
        return {"task": self.name, "T": self.T}

    def sample(self, batch_size, generator):
        _check_sample_args(self.name, batch_size, generator)
        T, B = self.T, batch_size
        steps = T + T // 10
        lengths = _uniform_int(T, steps, B, generator)
        t1 = _uniform_int(T // 10, T // 5, B, generator)
        t2 = _uniform_int(T // 2, T // 2 + T // 10, B, generator)
        first_is_y = torch.randint(0, 2, (B,), generator=generator)
        second_is_y = torch.randint(0, 2, (B,), generator=generator)
        tokens = torch.randint(2, 6, (steps, B), generator=generator)   # a, b, c, d
        columns = torch.arange(B)
        tokens[0] = 0                                                   # E
        tokens[t1, columns] = 6 + first_is_y                            # X or Y
        tokens[t2, columns] = 6 + second_is_y
        tokens[lengths - 1, columns] = 1                                # B, the trigger
        inputs = F.one_hot(tokens, self.input_size).float()
        inputs = inputs * (torch.arange(steps).view(-1, 1, 1) < lengths.view(1, -1, 1))
        targets = 2 * first_is_y + second_is_y
        return Batch(inputs, targets, lengths)

    def loss(self, outputs, batch):
        return F.cross_entropy(outputs, batch.targets)

    def metrics(self, outputs, batch):
        right = outputs.argmax(-1) == batch.targets
        return {"loss": float(self.loss(outputs.double(), batch)),
                "accuracy": float(right.double().mean())}

    def baseline_loss(self, batch=None):
        return math.log(len(self.CLASSES))

    def solved(self, metrics):
        return metrics["accuracy"] == 1.0


# -- by name -------------------------------------------------------------------------------

TASKS = {
    "adding": lambda **kw: AddingProblem(form="arjovsky2016", **kw),
    "adding1997": lambda **kw: AddingProblem(form="hochreiter1997", **kw),
    "copy": CopyMemory,
    "reber": EmbeddedReber,
    "temporal_order": TemporalOrder,
}


def make_task(name: str, **params) -> Task:
    """A task by name: adding, adding1997, copy (need T), reber, temporal_order."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    try:
        return TASKS[name](**params)
    except TypeError as exc:
        raise TypeError(f"{name}: bad parameters {params}: {exc}") from None
