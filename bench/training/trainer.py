"""One trainer for every trainable implementation: the layer comes from the registry.

A model is the implementation's recurrent layer plus a linear read-out, so differences
between implementations can only come from the layer. Everything random is drawn from
generators derived from the config's seeds, and the initial weights are drawn here (in
float32, then cast), not by the implementation: the same seed therefore starts `reference`
(float64), `torch`, `scripted` and `numba` from the same numbers and feeds them the same
batches, which is what lets their loss curves be compared step by step.

    result = train(make_task("adding", T=100), TrainConfig(cell="lstm", hidden_size=128))
    result.final["loss"], result.steps_to_threshold, result.diverged
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

import impls
from bench.training.tasks import Batch, Task

DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Plain SGD (no momentum) is the optimiser of Pascanu et al. 2013, whose update grows with
#: the gradient: the setting where clipping and divergence are questions at all.
OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}

#: Rows of the held-out set run through the model at once (bounds memory at long T).
EVAL_CHUNK = 500


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; with the task, it fixes the result on a CPU.

    forget_bias: LSTM only; sets the forget gate's total bias (bias_ih's f-block to this,
    bias_hh's to 0), Gers et al. 2000 / Jozefowicz et al. 2015 use 1.
    irnn: rnn_relu only; identity recurrent weights and zero biases (Le et al. 2015).
    clip_norm: clip the global gradient norm to this; None leaves gradients alone.
    optimizer: "adam", "rmsprop" or "sgd", PyTorch's defaults otherwise (RMSprop's smoothing
    0.99, SGD without momentum).
    eval_seed: seeds the validation set, drawn apart from the training stream, which decides
    when a run has solved its task and which of its evaluations is kept; test_seed seeds the
    test set (as large), on which the kept model is scored once, at the end. Both are the
    same for every run by default, so every model is scored on the same sequences.
    stop_on_success: end at the first evaluation that meets the task's success rule.
    """

    cell: str
    hidden_size: int
    impl: str = "torch"
    dtype: str = "float32"
    device: str = "cpu"
    optimizer: str = "adam"
    lr: float = 1e-3
    batch_size: int = 50
    steps: int = 1000
    clip_norm: float | None = None
    forget_bias: float | None = None
    irnn: bool = False
    seed: int = 0
    eval_every: int = 100
    eval_size: int = 1000
    eval_seed: int = 2016
    test_seed: int = 1997
    log_every: int = 10
    stop_on_success: bool = False

    def __post_init__(self):
        if self.cell not in impls.CELLS:
            raise ValueError(f"TrainConfig: 'cell' must be one of {impls.CELLS}, got {self.cell!r}")
        for arg in ("hidden_size", "batch_size", "steps", "eval_every", "eval_size", "log_every"):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig: {arg!r} must be a positive int, got {value!r}")
        for arg in ("seed", "eval_seed", "test_seed"):
            value = getattr(self, arg)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig: {arg!r} must be an int >= 0, got {value!r}")
        if self.dtype not in DTYPES:
            raise ValueError(
                f"TrainConfig: 'dtype' must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig: 'optimizer' must be one of {tuple(OPTIMIZERS)}, "
                             f"got {self.optimizer!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig: 'lr' must be a positive number, got {self.lr!r}")
        if self.clip_norm is not None and not (
                isinstance(self.clip_norm, (int, float)) and self.clip_norm > 0):
            raise ValueError("TrainConfig: 'clip_norm' must be None or a positive number, "
                             f"got {self.clip_norm!r}")
        if self.forget_bias is not None and self.cell != "lstm":
            raise ValueError(
                f"TrainConfig: 'forget_bias' applies to the lstm cell only, got cell {self.cell!r}")
        if self.irnn and self.cell != "rnn_relu":
            raise ValueError("TrainConfig: 'irnn' needs cell 'rnn_relu' (IRNN is a ReLU RNN), "
                             f"got {self.cell!r}")


@dataclass
class TrainResult:
    """What a run produced. `curve`: mean training loss and largest gradient norm per
    `log_every` steps; `evals`: validation metrics every `eval_every` steps (and at step 0);
    `test`: test metrics of the model as it was at the evaluation with the lowest
    validation loss (its `step`), the number a claim reports; `steps_done`: optimizer
    updates applied; `cpu_seconds`: this process's CPU time, which a busy machine inflates
    less than the wall-clock `seconds`."""

    config: TrainConfig
    task: dict
    n_parameters: int
    baseline_loss: float
    curve: list[dict] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    test: dict = field(default_factory=dict)
    steps_done: int = 0
    steps_to_threshold: int | None = None
    diverged: bool = False
    divergence: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def final(self) -> dict:
        """The last validation evaluation (NaN loss if the run diverged before one)."""
        return self.evals[-1]

    @property
    def solved(self) -> bool:
        """The validation set met the task's success rule at some evaluation."""
        return self.steps_to_threshold is not None

    def to_dict(self) -> dict:
        result = asdict(self)
        result["final"] = self.final
        result["solved"] = self.solved
        return result


# -- the model -----------------------------------------------------------------------------


class SequenceModel(nn.Module):
    """A recurrent layer from the registry and a linear read-out."""

    def __init__(self, layer: nn.Module, readout: nn.Linear, per_step: bool):
        super().__init__()
        self.layer = layer
        self.readout = readout
        self.per_step = per_step

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        y, _ = self.layer(inputs)
        if self.per_step:
            return self.readout(y)
        last = y[lengths - 1, torch.arange(y.shape[1], device=y.device)]
        return self.readout(last)


def parameter_count(cell: str, input_size: int, hidden_size: int, output_size: int) -> int:
    """Trainable parameters of the layer (two biases, PyTorch's layout) plus the read-out."""
    shapes = impls.parameter_shapes(cell, input_size, hidden_size).values()
    return sum(math.prod(s) for s in shapes) + output_size * (hidden_size + 1)


def matched_hidden_size(cell: str, input_size: int, output_size: int, n_parameters: int) -> int:
    """The hidden size whose model has the parameter count closest to `n_parameters`."""
    gates = impls.GATES[cell]
    # Solve gates*(H^2 + (I+2) H) + O (H+1) = n for H, then take the better neighbour.
    a, b = gates, gates * (input_size + 2) + output_size
    root = (-b + math.sqrt(b * b + 4 * a * max(n_parameters - output_size, 0))) / (2 * a)
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(candidates, key=lambda h: (
        abs(parameter_count(cell, input_size, h, output_size) - n_parameters), h))


def _generator(*entropy: int) -> torch.Generator:
    """An independent, reproducible stream for each (seed, purpose) pair."""
    state = np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def initial_weights(task: Task, config: TrainConfig) -> tuple[dict, dict]:
    """The layer's and the read-out's starting state_dicts, in float32, from the seed.

    Every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)): PyTorch's own init for nn.LSTM/GRU/RNN
    and for a Linear with H inputs. Then the IRNN and forget-bias options.
    """
    gen = _generator(config.seed, 0)
    H, bound = config.hidden_size, 1.0 / math.sqrt(config.hidden_size)

    def uniform(shape):
        return (torch.rand(shape, generator=gen) * 2 - 1) * bound

    shapes = impls.parameter_shapes(config.cell, task.input_size, H)
    layer = {name: uniform(shape) for name, shape in shapes.items()}
    readout = {"weight": uniform((task.output_size, H)), "bias": uniform((task.output_size,))}
    if config.irnn:
        layer["weight_hh_l0"] = torch.eye(H)
        layer["bias_ih_l0"].zero_()
        layer["bias_hh_l0"].zero_()
    if config.forget_bias is not None:
        layer["bias_ih_l0"][H:2 * H] = config.forget_bias   # gate order i, f, g, o
        layer["bias_hh_l0"][H:2 * H] = 0.0
    return layer, readout


def build_model(task: Task, config: TrainConfig) -> SequenceModel:
    impl = impls.get(config.impl)
    if not impl.trainable:
        raise ValueError(f"implementation {config.impl!r} has no backward pass; "
                         f"trainable ones: {[n for n in impls.names() if impls.get(n).trainable]}")
    dtype = DTYPES[config.dtype]
    layer = impl.build(config.cell, input_size=task.input_size, hidden_size=config.hidden_size,
                       device=config.device, dtype=dtype)
    readout = nn.Linear(config.hidden_size, task.output_size, device=config.device, dtype=dtype)
    layer_state, readout_state = initial_weights(task, config)
    layer.load_state_dict({k: v.to(config.device, dtype) for k, v in layer_state.items()})
    readout.load_state_dict({k: v.to(config.device, dtype) for k, v in readout_state.items()})
    return SequenceModel(layer, readout, task.per_step)


def _on(batch: Batch, device: str, dtype: torch.dtype) -> Batch:
    targets = batch.targets
    targets = targets.to(device, dtype) if targets.is_floating_point() else targets.to(device)
    legal = None if batch.legal is None else batch.legal.to(device)
    return Batch(batch.inputs.to(device, dtype), targets, batch.lengths.to(device), legal)


def _rows(batch: Batch, rows: slice) -> Batch:
    targets = batch.targets[rows] if batch.targets.dim() == 1 else batch.targets[:, rows]
    legal = None if batch.legal is None else batch.legal[:, rows]
    return Batch(batch.inputs[:, rows], targets, batch.lengths[rows], legal)


def _evaluate(model: SequenceModel, task: Task, held_out: Batch) -> dict:
    with torch.no_grad():
        outputs = [
            model(part.inputs, part.lengths)
            for part in (_rows(held_out, slice(i, i + EVAL_CHUNK))
                         for i in range(0, held_out.batch_size, EVAL_CHUNK))
        ]
    outputs = torch.cat(outputs, dim=1 if task.per_step else 0)
    return task.metrics(outputs, held_out)


# -- training ------------------------------------------------------------------------------


def train(task: Task, config: TrainConfig,
          progress: Callable[[str], None] | None = None) -> TrainResult:
    """Train from the config's seed; divergence (NaN/inf loss or gradient) ends the run and
    is recorded, it never raises.

    Whatever draws from torch's global generator while training (dropout masks, nn's or a
    layer's own) draws from one seeded by the config, then the caller's generator state is
    restored: a run's result never depends on what its process ran before it.
    """
    if not isinstance(task, Task):
        raise TypeError(f"train: argument 'task' must be a bench.training.tasks.Task, "
                        f"got {type(task).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"train: argument 'config' must be a TrainConfig, "
                        f"got {type(config).__name__}")
    with torch.random.fork_rng(devices=[] if config.device == "cpu" else None):
        torch.manual_seed(_generator(config.seed, 3).initial_seed())
        return _train(task, config, progress)


def _train(task: Task, config: TrainConfig,
           progress: Callable[[str], None] | None) -> TrainResult:
    dtype = DTYPES[config.dtype]
    model = build_model(task, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = OPTIMIZERS[config.optimizer](params, lr=config.lr)
    data = _generator(config.seed, 1)
    validation = _on(task.sample(config.eval_size, _generator(config.eval_seed, 2)),
                     config.device, dtype)
    result = TrainResult(
        config=config, task=task.describe(), n_parameters=sum(p.numel() for p in params),
        baseline_loss=task.baseline_loss(validation),
    )
    started, started_cpu = time.perf_counter(), time.process_time()
    kept = {"loss": math.inf, "step": 0, "state": copy.deepcopy(model.state_dict())}

    def record_eval(step: int) -> bool:
        """Evaluate; True when training should stop here."""
        metrics = _evaluate(model, task, validation)
        result.evals.append({"step": step, **metrics})
        if not math.isfinite(metrics["loss"]):
            result.diverged, result.divergence = True, f"validation loss {metrics['loss']}"
            return True
        if metrics["loss"] < kept["loss"]:
            kept.update(loss=metrics["loss"], step=step, state=copy.deepcopy(model.state_dict()))
        if result.steps_to_threshold is None and task.solved(metrics):
            result.steps_to_threshold = step
            return config.stop_on_success
        return False

    record_eval(0)
    window_loss, window_norm, window_steps = 0.0, 0.0, 0
    for step in range(1, config.steps + 1):
        batch = _on(task.sample(config.batch_size, data), config.device, dtype)
        loss = task.loss(model(batch.inputs, batch.lengths), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_norm is None:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, config.clip_norm)
        loss_value, norm_value = float(loss.detach()), float(norm)
        if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
            result.diverged = True
            result.divergence = f"step {step}: loss {loss_value}, gradient norm {norm_value}"
            result.evals.append({"step": step, **{k: math.nan for k in result.evals[0]
                                                  if k != "step"}})
            break
        optimizer.step()
        result.steps_done = step
        window_loss += loss_value
        window_norm = max(window_norm, norm_value)
        window_steps += 1
        if step % config.log_every == 0 or step == config.steps:
            result.curve.append({"step": step, "loss": window_loss / window_steps,
                                 "grad_norm_max": window_norm})
            window_loss, window_norm, window_steps = 0.0, 0.0, 0
        if step % config.eval_every == 0 or step == config.steps:
            stop = record_eval(step)
            if progress is not None:
                progress(f"step {step}: held-out {result.evals[-1]}")
            if stop:
                break
    if window_steps:
        result.curve.append({"step": result.steps_done, "loss": window_loss / window_steps,
                             "grad_norm_max": window_norm})
    model.load_state_dict(kept["state"])
    test = _on(task.sample(config.eval_size, _generator(config.test_seed, 4)), config.device, dtype)
    metrics = _evaluate(model, task, test)
    result.test = {"step": kept["step"], **metrics, "baseline_loss": task.baseline_loss(test),
                   "solved": task.solved(metrics)}
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - started_cpu
    return result
