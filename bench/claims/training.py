"""The claims' training runs: one setting for all of them, through `bench.training.trainer`.

Every trained claim (C2-C4, D1-D4, E1-E4, F1-F2) follows one protocol unless the claim
itself is about a part of it:
- every run is scored on a test set of its own seed, as the model stood at its best
  evaluation on a separate validation set (which also decides when a task counts as solved);
- the learning rate is chosen per model and task by `choose_lr`: the `LR_GRID` rates are
  tried on the first seed and the one with the lowest validation loss is used for every seed;
- `SEEDS` per profile (5 by default, 10 in `full`), and intervals on every compared figure
  (`bench.claims.intervals`).
Runs are memoised within a process: C3 and D1 train the same (task, config), and the
second asks for it for free.

What the trainer does not offer, the claims add from outside, through public interfaces:
- a layer the registry does not have (a rescaled initial W_hh, a custom cell) is registered
  for the duration of its runs under a `claims-...` name (`impls.register`);
- the trained model is caught with a global module forward hook (`trained_models`), so a
  claim can look inside it (gates, cell states) or test it on other data after `train`;
- a finite training set is a Task that serves the training batches from a fixed pool and
  the validation and test sets fresh (`FiniteTrainingSet`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable

import torch

import impls
from bench.training.tasks import Batch, Task
from bench.training.trainer import SequenceModel, TrainConfig, TrainResult, train

#: The implementation the claims train with: `scripted` was the fastest trainable one at
#: these small sizes on the 2-core CPU (LSTM H=32, T=50, batch 32: 19 ms per step against
#: 61 ms for `torch`, whose oneDNN LSTM has a high fixed cost, and 25 ms for `torch-native`).
TRAIN_IMPL = "scripted"
OPTIMIZER = "adam"
#: Adam at 1e-2 with the gradient norm clipped to 1 learns the adding task at T=50 in about
#: 800 steps with H=32, within this suite's minutes; 1e-3 (the papers' rate) needs far more.
#: The rate a run starts from; `choose_lr` replaces it per model and task.
LR = 1e-2
#: The rates `choose_lr` tries, per optimiser: Adam's around its usual 1e-3 to 1e-2; plain
#: SGD's, whose step is the gradient itself, larger.
LR_GRID = {"adam": (1e-3, 3e-3, 1e-2), "sgd": (1e-2, 3e-2, 1e-1), "rmsprop": (1e-3, 3e-3, 1e-2)}
CLIP_NORM = 1.0
BATCH_SIZE = 32
EVAL_SIZE = 500
#: Seeds per profile: enough for an interval from `default` up.
SEEDS = {"smoke": (0,), "quick": (0, 1), "default": tuple(range(5)), "full": tuple(range(10))}

_RUNS: dict[tuple, TrainResult] = {}


def config(cell: str, hidden_size: int, *, steps: int, seed: int, **overrides) -> TrainConfig:
    """The claims' TrainConfig; `overrides` for what a claim varies (clip_norm, irnn, ...)."""
    settings = {"impl": TRAIN_IMPL, "optimizer": OPTIMIZER, "lr": LR, "clip_norm": CLIP_NORM,
                "batch_size": BATCH_SIZE, "eval_size": EVAL_SIZE,
                "eval_every": max(1, min(100, steps // 4)), "log_every": 10}
    settings.update(overrides)
    return TrainConfig(cell=cell, hidden_size=hidden_size, steps=steps, seed=seed, **settings)


def describe() -> str:
    rates = ", ".join(f"{r:g}" for r in LR_GRID[OPTIMIZER])
    return (f"{OPTIMIZER}, learning rate chosen per model and task from {{{rates}}} by the "
            f"lowest validation loss of the first seed, batch {BATCH_SIZE}, gradient norm "
            f"clipped to {CLIP_NORM:g}, implementation `{TRAIN_IMPL}`; validation and test "
            f"sets of {EVAL_SIZE} sequences each, apart from the training stream; the test "
            "figure is the model at its best validation loss")


def run(task: Task, cfg: TrainConfig) -> TrainResult:
    """Train `cfg` on `task`, or recall the identical run made earlier in this process."""
    key = (repr(sorted(task.describe().items())), cfg)
    if key not in _RUNS:
        _RUNS[key] = train(task, cfg)
    return _RUNS[key]


def choose_lr(task: Task, cfg: TrainConfig, rates: tuple[float, ...] | None = None) -> dict:
    """The learning rate for `cfg`'s model on `task`: each of `rates` (the optimiser's
    `LR_GRID` by default) trained as `cfg` says, and the one whose run reached the lowest
    validation loss wins (a diverged run counts as infinite). Returns {"lr", "tried"}.

    The run of the chosen rate is the same run as `cfg` at that rate, so the search costs
    len(rates) - 1 extra runs, not len(rates).
    """
    rates = LR_GRID[cfg.optimizer] if rates is None else rates
    tried = []
    for lr in rates:
        result = run(task, dataclasses.replace(cfg, lr=lr))
        best = min((e["loss"] for e in result.evals if math.isfinite(e["loss"])),
                   default=math.inf)
        tried.append({"lr": lr, "best_validation_loss": best, "diverged": result.diverged})
    chosen = min(tried, key=lambda t: (t["best_validation_loss"], t["lr"]))
    return {"lr": chosen["lr"], "tried": tried}


def choose_and_train(task: Task, cfg: TrainConfig, seeds) -> dict:
    """`choose_lr` for `cfg`'s model on `task` (first seed), then every seed at the
    chosen rate, with its trained model: {"lr", "tried", "runs": [(result, model)]}.

    The search's run at the chosen rate is the first seed's run: its model is caught while
    the search trains, so that seed is not trained twice.
    """
    first = dataclasses.replace(cfg, seed=seeds[0])
    with trained_models() as caught:
        choice = choose_lr(task, first)
    rates = LR_GRID[cfg.optimizer]
    runs = []
    for seed in seeds:
        chosen = dataclasses.replace(cfg, seed=seed, lr=choice["lr"])
        if seed == seeds[0] and len(caught) == len(rates):
            runs.append((run(task, chosen), caught[rates.index(choice["lr"])]))
        else:
            runs.append(train_and_keep(task, chosen))
    return {**choice, "runs": runs}


def summary(result: TrainResult) -> dict:
    """The numbers a claim reports about one run (JSON-ready). `test_*` are the numbers to
    compare models by; `final_loss` and `best_loss` are validation losses."""
    c = result.config
    peak = max((p["grad_norm_max"] for p in result.curve), default=math.nan)
    return {
        "cell": c.cell, "impl": c.impl, "hidden_size": c.hidden_size, "seed": c.seed,
        "irnn": c.irnn, "forget_bias": c.forget_bias, "clip_norm": c.clip_norm,
        "optimizer": c.optimizer, "lr": c.lr,
        "task": result.task, "n_parameters": result.n_parameters,
        "baseline_loss": result.baseline_loss, "final_loss": result.final["loss"],
        "final_accuracy": result.final.get("accuracy"),
        "best_loss": min((e["loss"] for e in result.evals), default=math.nan),
        "test_loss": result.test["loss"], "test_accuracy": result.test.get("accuracy"),
        "test_baseline_loss": result.test["baseline_loss"],
        "test_solved": result.test["solved"], "selected_step": result.test["step"],
        "solved": result.solved, "steps_to_threshold": result.steps_to_threshold,
        "steps_done": result.steps_done, "diverged": result.diverged,
        "divergence": result.divergence, "grad_norm_max": peak, "seconds": result.seconds,
        "evals": [{"step": e["step"], "loss": e["loss"]} for e in result.evals],
    }


# -- reaching past the trainer -------------------------------------------------------------


@contextlib.contextmanager
def trained_models():
    """Collect every `SequenceModel` that runs a forward pass inside the block.

    `train` builds its model internally and returns only numbers; the model it trained is
    the one that ran, so a global forward hook catches it, trained weights and read-out.
    """
    models: list[SequenceModel] = []

    def hook(module, args, output):
        if isinstance(module, SequenceModel) and not any(m is module for m in models):
            models.append(module)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield models
    finally:
        handle.remove()


def train_and_keep(task: Task, cfg: TrainConfig) -> tuple[TrainResult, SequenceModel]:
    """Train and return the trained model as well (never memoised: the model is the point)."""
    with trained_models() as models:
        result = train(task, cfg)
    return result, models[-1]


def evaluate(model: torch.nn.Module, task: Task, batch: Batch) -> dict:
    """`task`'s metrics of `model` on `batch`, without autograd (hence without dropout)."""
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        outputs = model(batch.inputs.to(dtype), batch.lengths)
    return task.metrics(outputs, batch)


@contextlib.contextmanager
def temporary_implementation(name: str, factory: Callable[..., torch.nn.Module],
                             cells: frozenset[str]):
    """Register `factory` as implementation `name` (CPU, float32/64) while the block runs."""
    impls.register(impls.Implementation(
        name=name, factory=factory, cells=cells, devices=frozenset({"cpu"}),
        dtypes=frozenset({torch.float32, torch.float64}), trainable=True,
        description="a claims experiment's layer, registered for its runs only"))
    try:
        yield name
    finally:
        impls.unregister(name)


def rescale_spectral_radius(weight: torch.Tensor, radius: float) -> torch.Tensor:
    """`weight` scaled so that its largest |eigenvalue| is `radius`."""
    current = torch.linalg.eigvals(weight.detach().double()).abs().max()
    return weight * (radius / float(current))


def radius_factory(radius: float, base: str = TRAIN_IMPL):
    """A factory of `base` layers whose W_hh is rescaled to `radius` whenever weights load.

    The trainer draws the initial weights itself and loads them into the layer; a
    post-load hook applies the claim's spectral radius on top of that first load only, so
    everything else about the run (seeds, data, optimiser) stays the trainer's, and the
    trained weights the trainer loads back at the end (its best-validation model) are
    left as they are.
    """

    def factory(cell, input_size, hidden_size, **options):
        layer = impls.get(base).build(cell, input_size, hidden_size, **options)

        def rescale(module, incompatible_keys):
            handle.remove()
            with torch.no_grad():
                module.weight_hh_l0.copy_(rescale_spectral_radius(module.weight_hh_l0, radius))

        handle = layer.register_load_state_dict_post_hook(rescale)
        return layer

    return factory


class FiniteTrainingSet(Task):
    """`task`'s training batches from a fixed pool of `size` sequences, drawn once from
    `seed`, and the trainer's validation and test sets fresh from `task`: the learning-rate
    search and the kept checkpoint judge the model on sequences it never trained on.

    The trainer draws its validation and test sets as batches of `eval_size` sequences and
    its training batches as `batch_size` ones; a request for exactly `held_out` sequences is
    served fresh, any other from the pool (with replacement, by the trainer's generator), so
    `held_out` must differ from the training batch size.
    """

    def __init__(self, task: Task, size: int, seed: int, held_out: int = EVAL_SIZE):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"FiniteTrainingSet: 'size' must be a positive int, got {size!r}")
        if held_out == BATCH_SIZE:
            raise ValueError(f"FiniteTrainingSet: 'held_out' must differ from the training "
                             f"batch size {BATCH_SIZE}, got {held_out!r}")
        self.task, self.size, self.seed, self.held_out = task, size, seed, held_out
        self.name, self.input_size, self.output_size = task.name, task.input_size, task.output_size
        self.per_step, self.T, self.success_rule = task.per_step, task.T, task.success_rule
        self.pool = task.sample(size, torch.Generator().manual_seed(seed))

    def sample(self, batch_size, generator):
        if batch_size == self.held_out:
            return self.task.sample(batch_size, generator)
        rows = torch.randint(0, self.size, (batch_size,), generator=generator)
        p = self.pool
        targets = p.targets[rows] if p.targets.dim() == 1 else p.targets[:, rows]
        legal = None if p.legal is None else p.legal[:, rows]
        return Batch(p.inputs[:, rows], targets, p.lengths[rows], legal)

    def loss(self, outputs, batch):
        return self.task.loss(outputs, batch)

    def metrics(self, outputs, batch):
        return self.task.metrics(outputs, batch)

    def baseline_loss(self, batch=None):
        return self.task.baseline_loss(batch)

    def solved(self, metrics):
        return self.task.solved(metrics)

    def describe(self):
        return {**self.task.describe(), "train_size": self.size, "pool_seed": self.seed,
                "held_out": "fresh"}
