"""Claims A1-A5: parameter counts, state shapes, the layer interface and the GRU's form.

These are exact: every registered implementation is built (and run) and its parameters and
states are counted, with no training. A new implementation in the registry is picked up
without a change here.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import torch
from torch import nn

import impls
from bench.claims.experiment import (
    DEPENDS,
    NOT_SUPPORTED,
    NOTE_002,
    NOTE_003,
    NOTE_004,
    SUPPORTED,
    Anchor,
    Claim,
    Verdict,
    save_figure,
    table,
)
from bench.speed.cases import BUILT_IN
from bench.training.trainer import matched_hidden_size

#: (input sizes, hidden sizes) whose product is the grid for A1 and A2.
SIZE_GRIDS = {
    "smoke": ((1, 5), (1, 8)),
    "quick": ((1, 3, 32, 100), (1, 8, 64, 200)),
    "default": ((1, 2, 3, 16, 64, 100, 257), (1, 2, 8, 64, 128, 256, 513)),
}
#: (I, H) pairs with I != H, so that a state of size H and one of size H + I differ.
STATE_SIZES = {
    "smoke": ((3, 5),),
    "quick": ((3, 5), (16, 8)),
    "default": ((3, 5), (16, 8), (10, 32), (100, 7)),
}


def _dtype_for(impl) -> torch.dtype:
    """float64 where the implementation has it (exact comparisons), else float32."""
    for dtype in (torch.float64, torch.float32):
        if dtype in impl.dtypes:
            return dtype
    return sorted(impl.dtypes, key=lambda d: -torch.finfo(d).bits)[0]




def implementations(cell: str) -> list[tuple[str, str, torch.dtype]]:
    """(name, device, dtype) for every built-in implementation with `cell` (the peers'
    structure is nn's: they are checked by the conformance tests)."""
    found = []
    for name in BUILT_IN:
        impl = impls.get(name)
        if cell in impl.cells:
            dtype = _dtype_for(impl)
            found += [(name, device, dtype) for device in ("cpu", "cuda")
                      if impl.supports(cell, device, dtype)]
    return found


# -- A1: parameter counts ------------------------------------------------------------------


def formula_parameters(cell: str, I: int, H: int, biases_per_gate: int = 2) -> int:
    """G gate blocks, each an H x (I + H) matrix and `biases_per_gate` vectors of H."""
    return impls.GATES[cell] * (H * (I + H) + biases_per_gate * H)


def count_parameters(layer: nn.Module, H: int) -> dict:
    """The layer's trainable parameters, read the notes' way: per gate, one H x (I+H) matrix.

    A gate's matrix is its row block of every weight, the blocks side by side; a layout
    whose weights do not split into H-row blocks is reported as such.
    """
    weights = [p for p in layer.parameters() if p.dim() == 2]
    biases = [p for p in layer.parameters() if p.dim() == 1]
    rows = {w.shape[0] for w in weights}
    result = {
        "n_parameters": sum(p.numel() for p in layer.parameters()),
        "names": sorted(n for n, _ in layer.named_parameters()),
        "weight_shapes": [list(w.shape) for w in weights],
    }
    if len(rows) == 1 and rows.pop() % H == 0:
        result["n_matrices"] = weights[0].shape[0] // H
        result["matrix_shape"] = [H, sum(w.shape[1] for w in weights)]
        result["biases_per_gate"] = sum(b.numel() for b in biases) // weights[0].shape[0]
    else:
        result["n_matrices"] = None
        result["matrix_shape"] = None
        result["biases_per_gate"] = None
    return result


def measure_a1(profile: str) -> dict:
    inputs, hiddens = SIZE_GRIDS[profile]
    rows = []
    for cell in impls.CELLS:
        for (name, device, dtype), I, H in itertools.product(implementations(cell), inputs,
                                                             hiddens):
            layer = impls.get(name).build(cell, input_size=I, hidden_size=H, device=device,
                                          dtype=dtype)
            counted = count_parameters(layer, H)
            rows.append({"impl": name, "device": device, "dtype": str(dtype), "cell": cell,
                         "I": I, "H": H, "gates": impls.GATES[cell],
                         "formula": formula_parameters(cell, I, H), **counted})
    return {"grid": {"I": list(inputs), "H": list(hiddens)}, "rows": rows}


def _a1_row_ok(row: dict) -> bool:
    return (row["n_parameters"] == row["formula"] and row["n_matrices"] == row["gates"]
            and row["matrix_shape"] == [row["H"], row["H"] + row["I"]])


def decide_a1(m: dict) -> Verdict:
    rows = m["rows"]
    bad = [r for r in rows if not _a1_row_ok(r)]
    matrices = {(r["cell"], r["n_matrices"]) for r in rows}
    if not bad:
        return Verdict(SUPPORTED, (
            f"all {len(rows)} (implementation, cell, I, H) builds have exactly G(H(I+H)+2H) "
            f"parameters and G gate matrices of shape H x (H+I); G per cell: "
            f"{', '.join(f'{c} {g}' for c, g in sorted(matrices))}"))
    first = bad[0]
    return Verdict(NOT_SUPPORTED, (
        f"{len(bad)} of {len(rows)} builds differ from the formula, e.g. {first['impl']} "
        f"{first['cell']} I={first['I']} H={first['H']}: {first['n_parameters']} parameters "
        f"(formula {first['formula']}), {first['n_matrices']} matrices of "
        f"{first['matrix_shape']}"))


def summarize_a1(m: dict) -> str:
    groups = {}
    for r in m["rows"]:
        key = (r["impl"], r["device"], r["dtype"], r["cell"])
        ok, total = groups.get(key, (0, 0))
        groups[key] = (ok + _a1_row_ok(r), total + 1)
    example = {r["cell"]: r for r in m["rows"] if r["I"] == m["grid"]["I"][-1]
               and r["H"] == m["grid"]["H"][-1]}
    lines = [
        f"Grid: I in {m['grid']['I']}, H in {m['grid']['H']} (every pair). Formula, "
        "two bias vectors per gate as in PyTorch/cuDNN: RNN `H(I+H)+2H`, GRU `3(H(I+H)+2H)`, "
        "LSTM `4(H(I+H)+2H)` (a one-bias layout would have `H` less per gate).",
        "",
        table(["implementation", "device", "dtype", "cell", "builds matching the formula"],
              [[*k, f"{ok}/{total}"] for k, (ok, total) in sorted(groups.items())]),
        "",
        f"At I={m['grid']['I'][-1]}, H={m['grid']['H'][-1]}:",
        "",
        table(["cell", "parameters", "formula", "gate matrices", "matrix shape"],
              [[c, r["n_parameters"], r["formula"], r["n_matrices"],
                "x".join(map(str, r["matrix_shape"] or ["-"]))]
               for c, r in example.items()]),
    ]
    return "\n".join(lines)


def plot_parameters(m: dict, directory: Path) -> list[Path]:
    """Counted parameters against H at the largest I, formula as lines (one per cell)."""
    import matplotlib.pyplot as plt

    I = m["grid"]["I"][-1]
    fig, ax = plt.subplots(figsize=(6, 4))
    hs = sorted(set(m["grid"]["H"]))
    for cell in impls.CELLS:
        line = ax.plot(hs, [formula_parameters(cell, I, H) for H in hs], label=f"{cell} formula")
        counted = [(r["H"], r["n_parameters"]) for r in m["rows"]
                   if r["cell"] == cell and r["I"] == I]
        ax.scatter(*zip(*counted), color=line[0].get_color(), marker="x", s=25)
    ax.set(xscale="log", yscale="log", xlabel="hidden size H",
           ylabel="parameters (one layer)",
           title=f"Counted (x, every implementation) vs formula, I={I}")
    ax.legend(fontsize=8)
    path = directory / "A1_parameters.png"
    fig.tight_layout()
    save_figure(fig, path)
    return [path]


# -- A2: GRU / LSTM parameter ratio --------------------------------------------------------


def measure_a2(profile: str) -> dict:
    inputs, hiddens = SIZE_GRIDS[profile]
    rows = []
    for (name, device, dtype), I, H in itertools.product(implementations("gru"), inputs,
                                                         hiddens):
        impl = impls.get(name)
        if "lstm" not in impl.cells:
            continue
        counts = {cell: count_parameters(impl.build(cell, input_size=I, hidden_size=H,
                                                    device=device, dtype=dtype),
                                         H)["n_parameters"]
                  for cell in ("gru", "lstm")}
        ratio = Fraction(counts["gru"], counts["lstm"])
        rows.append({"impl": name, "device": device, "I": I, "H": H, **counts,
                     "ratio": f"{ratio.numerator}/{ratio.denominator}", "ratio_value": float(ratio),
                     "gru_hidden_at_equal_parameters": matched_hidden_size(
                         "gru", I, 0, counts["lstm"])})
    return {"grid": {"I": list(inputs), "H": list(hiddens)}, "rows": rows}


def decide_a2(m: dict) -> Verdict:
    ratios = {r["ratio"] for r in m["rows"]}
    if ratios == {"3/4"}:
        return Verdict(SUPPORTED, (
            f"GRU/LSTM parameters = 3/4 exactly in all {len(m['rows'])} (implementation, I, H) "
            "builds: at equal sizes a GRU always has a quarter fewer"))
    if all(r["gru"] < r["lstm"] for r in m["rows"]):
        return Verdict(SUPPORTED, f"GRU < LSTM everywhere, ratios {sorted(ratios)}")
    return Verdict(NOT_SUPPORTED, f"GRU >= LSTM in some builds, ratios {sorted(ratios)}")


def summarize_a2(m: dict) -> str:
    by_impl = {}
    for r in m["rows"]:
        by_impl.setdefault((r["impl"], r["device"]), set()).add(r["ratio"])
    largest = [r for r in m["rows"] if r["I"] == m["grid"]["I"][-1]]
    seen, matched = set(), []
    for r in largest:
        if r["H"] not in seen:
            seen.add(r["H"])
            matched.append([r["H"], r["lstm"], r["gru"], r["ratio"],
                            r["gru_hidden_at_equal_parameters"]])
    return "\n".join([
        table(["implementation", "device", "GRU/LSTM ratios over the grid"],
              [[*k, ", ".join(sorted(v))] for k, v in sorted(by_impl.items())]),
        "",
        f"At I={m['grid']['I'][-1]} (the last column: the GRU hidden size with the LSTM's "
        "parameter count, for parameter-matched comparisons such as D2):",
        "",
        table(["H", "LSTM", "GRU", "GRU/LSTM", "GRU H at equal parameters"], matched),
    ])


# -- A3: the memory cell's size ------------------------------------------------------------


def measure_a3(profile: str) -> dict:
    rows = []
    gen = torch.Generator().manual_seed(3)
    for (name, device, dtype), (I, H) in itertools.product(implementations("lstm"),
                                                           STATE_SIZES[profile]):
        layer = impls.get(name).build("lstm", input_size=I, hidden_size=H, device=device,
                                      dtype=dtype)
        x = torch.randn(4, 2, I, generator=gen).to(device, dtype)
        with torch.no_grad():
            _, (h, c) = layer(x)
        rows.append({"impl": name, "device": device, "I": I, "H": H,
                     "c_shape": list(c.shape), "h_shape": list(h.shape)})
    return {"rows": rows}


def decide_a3(m: dict) -> Verdict:
    sizes = [(r["c_shape"][-1], r["H"], r["I"]) for r in m["rows"]]
    if all(c == H + I for c, H, I in sizes):
        return Verdict(SUPPORTED, "c has H+I entries in every implementation")
    if all(c == H for c, H, _ in sizes):
        return Verdict(NOT_SUPPORTED, (
            f"c has H entries (not H+I) in all {len(sizes)} (implementation, I, H) runs; "
            "H+I is the width of each gate's weight matrix (it acts on [h, x]), not of c"))
    return Verdict(DEPENDS, f"c's size differs between implementations: {sizes}")


def summarize_a3(m: dict) -> str:
    return table(["implementation", "device", "I", "H", "shape of c_T", "shape of h_T"],
                 [[r["impl"], r["device"], r["I"], r["H"], r["c_shape"], r["h_shape"]]
                  for r in m["rows"]])


# -- A4: what goes in and what comes out ---------------------------------------------------


def _influences(layer, x, state, index) -> bool:
    """Whether perturbing state tensor `index` changes the output sequence."""
    with torch.no_grad():
        y, _ = layer(x, state)
        moved = list(state) if isinstance(state, tuple) else [state]
        moved[index] = moved[index] + 0.5
        y2, _ = layer(x, tuple(moved) if isinstance(state, tuple) else moved[0])
    return bool((y - y2).abs().max() > 0)


def measure_a4(profile: str) -> dict:
    del profile  # one small case per implementation is exhaustive here
    I, H, T, B = 3, 4, 5, 2
    rows = []
    gen = torch.Generator().manual_seed(4)
    for cell in ("lstm", "gru"):
        for name, device, dtype in implementations(cell):
            layer = impls.get(name).build(cell, input_size=I, hidden_size=H, device=device,
                                          dtype=dtype)

            def rand(*shape):
                return torch.randn(*shape, generator=gen).to(device, dtype)  # noqa: B023

            x = rand(T, B, I)
            state = (rand(1, B, H), rand(1, B, H)) if cell == "lstm" else rand(1, B, H)
            with torch.no_grad():
                y, out = layer(x, state)
            states_in = list(state) if cell == "lstm" else [state]
            states_out = list(out) if cell == "lstm" else [out]
            used = [_influences(layer, x, state, k) for k in range(len(states_in))]
            rows.append({
                "impl": name, "device": device, "cell": cell,
                "inputs": 1 + sum(used),
                "state_tensors_in": len(states_in),
                "state_tensors_out": len(states_out),
                "state_shapes_out": [list(s.shape) for s in states_out],
                "output_is_h": bool(torch.equal(y[-1], states_out[0][0])),
                "wrong_state_rejected": _rejects(layer, x, state, cell),
            })
    return {"sizes": {"I": I, "H": H, "T": T, "B": B}, "rows": rows}


def _rejects(layer, x, state, cell) -> bool:
    """An LSTM given only h, or a GRU given (h, c), must refuse: the arity is fixed."""
    wrong = state[0] if cell == "lstm" else (state, state)
    try:
        layer(x, wrong)
    except (TypeError, ValueError):
        return True
    return False


EXPECTED_ARITY = {"lstm": (3, 2), "gru": (2, 1)}


def decide_a4(m: dict) -> Verdict:
    bad = [r for r in m["rows"]
           if (r["inputs"], r["state_tensors_out"]) != EXPECTED_ARITY[r["cell"]]
           or not r["output_is_h"] or not r["wrong_state_rejected"]]
    if not bad:
        return Verdict(SUPPORTED, (
            f"in all {len(m['rows'])} implementation x cell runs: the LSTM step uses x, h and "
            "c (each changes the output) and returns h and c; the GRU uses x and h and "
            "returns h alone, which is also its output"))
    return Verdict(NOT_SUPPORTED, f"arity differs in {[(r['impl'], r['cell']) for r in bad]}")


def summarize_a4(m: dict) -> str:
    return table(["implementation", "device", "cell", "inputs that change the output",
                  "states returned", "output = h", "wrong arity rejected"],
                 [[r["impl"], r["device"], r["cell"], r["inputs"], r["state_tensors_out"],
                   r["output_is_h"], r["wrong_state_rejected"]] for r in m["rows"]])


# -- A5: the notes' GRU equations ----------------------------------------------------------


class NoteFormGRU(nn.Module):
    """The GRU as the notes write it: ``h' = (1 - z) * h + z * n``.

    With `reset_before` the reset gate multiplies h before the recurrent product, as the
    notes' candidate formula (and Cho et al. 2014) write it: ``n = tanh(W_in x + W_hn (r*h))``;
    without it, after (PyTorch, cuDNN and the notes' prose). Parameters use PyTorch's names
    and gate order r, z, n so that the same state_dict loads into both forms.
    """

    def __init__(self, input_size: int, hidden_size: int, reset_before: bool = False,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.hidden_size = hidden_size
        self.reset_before = reset_before
        for name, shape in impls.parameter_shapes("gru", input_size, hidden_size).items():
            self.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=dtype)))

    def step(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = (x_t @ self.weight_ih_l0.T + self.bias_ih_l0).chunk(3, dim=1)
        w_hr, w_hz, w_hn = self.weight_hh_l0.chunk(3, dim=0)
        b_hr, b_hz, b_hn = self.bias_hh_l0.chunk(3)
        r = torch.sigmoid(xr + h @ w_hr.T + b_hr)
        z = torch.sigmoid(xz + h @ w_hz.T + b_hz)
        if self.reset_before:
            n = torch.tanh(xn + (r * h) @ w_hn.T + b_hn)
        else:
            n = torch.tanh(xn + r * (h @ w_hn.T + b_hn))
        return (1 - z) * h + z * n

    def forward(self, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        h, outputs = h0[0], []
        for x_t in x:
            h = self.step(x_t, h)
            outputs.append(h)
        return torch.stack(outputs)


def flip_update_gate(state: dict, hidden_size: int) -> dict:
    """Negate the update gate's weights and biases: z -> 1 - z (sigmoid(-a) = 1 - sigmoid(a))."""
    flipped = {k: v.clone() for k, v in state.items()}
    for value in flipped.values():
        value[hidden_size:2 * hidden_size] *= -1
    return flipped


class _PyTorchFormStep(nn.Module):
    """One reference GRU step as a module of (x, h) -> y, for `functional_call`."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, h0):
        return self.layer(x, h0)[0]


def measure_a5(profile: str) -> dict:
    del profile  # exact identities: one moderate case settles them
    I, H, T, B = 5, 16, 30, 4
    gen = torch.Generator().manual_seed(5)
    bound = 1 / math.sqrt(H)
    state = {k: (torch.rand(s, generator=gen, dtype=torch.float64) * 2 - 1) * bound
             for k, s in impls.parameter_shapes("gru", I, H).items()}
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    h0 = torch.randn(1, B, H, generator=gen, dtype=torch.float64) * 0.5

    note = NoteFormGRU(I, H)
    note.load_state_dict(flip_update_gate(state, H))
    note_same_weights = NoteFormGRU(I, H)
    note_same_weights.load_state_dict(state)
    note_reset_before = NoteFormGRU(I, H, reset_before=True)
    note_reset_before.load_state_dict(flip_update_gate(state, H))
    with torch.no_grad():
        y_note = note(x, h0)
        y_same = note_same_weights(x, h0)
        y_before = note_reset_before(x, h0)

    rows = []
    for name, device, dtype in implementations("gru"):
        layer = impls.get(name).build("gru", input_size=I, hidden_size=H, device=device,
                                      dtype=dtype)
        layer.load_state_dict({k: v.to(device, dtype) for k, v in state.items()})
        with torch.no_grad():
            y, _ = layer(x.to(device, dtype), h0.to(device, dtype))
        rows.append({"impl": name, "device": device, "dtype": str(dtype),
                     "max_abs_diff_note_form_flipped":
                         float((y.double().cpu() - y_note).abs().max()),
                     "eps": float(torch.finfo(dtype).eps)})

    reference = impls.get("reference").build("gru", input_size=I, hidden_size=H,
                                             dtype=torch.float64)
    saturated = {}
    for label, form, params in (("note", note, dict(note.state_dict())),
                                ("pytorch", _PyTorchFormStep(reference),
                                 {f"layer.{k}": v for k, v in state.items()})):
        for bias in (-30.0, 30.0):
            saturated[f"{label}_z_bias_{bias:+g}"] = _kept_share(form, params, x[0], h0[0], bias)
    y_ref = y_of(reference, state, x, h0)
    return {
        "sizes": {"I": I, "H": H, "T": T, "B": B}, "seed": 5, "rows": rows,
        "max_abs_diff_same_weights_unflipped": float((y_same - y_ref).abs().max()),
        "max_abs_diff_reset_before_vs_after": float((y_before - y_ref).abs().max()),
        "old_state_share": saturated,
    }


def y_of(layer, state, x, h0) -> torch.Tensor:
    layer.load_state_dict(state)
    with torch.no_grad():
        return layer(x, h0)[0]


def _kept_share(form, params: dict, x_t, h, bias: float) -> float:
    """Share of h_{t-1} carried into h_t when the update gate z is pinned by `bias`.

    Pinning: the gate's weights to 0 and its bias to +-30, so z is 0 or 1 to machine
    precision. The candidate n is the same cell's output with z pinned the other way round
    for the form in which that gives n (found by taking whichever of the two pinned outputs
    is farther from h); the share is the projection of h_t - n on h_{t-1} - n: 1 when the
    old state is kept, 0 when it is replaced.
    """
    prefix = "layer." if "layer.weight_ih_l0" in params else ""
    H = h.shape[1]

    def pinned(b):
        p = {k: v.clone() for k, v in params.items()}
        for key in ("weight_ih_l0", "weight_hh_l0", "bias_hh_l0"):
            p[prefix + key][H:2 * H] = 0.0
        p[prefix + "bias_ih_l0"][H:2 * H] = b
        with torch.no_grad():
            return torch.func.functional_call(form, p, (x_t.unsqueeze(0),
                                                        h.unsqueeze(0)))[0]

    h_new, h_other = pinned(bias), pinned(-bias)
    # One of the two pinned outputs is h itself, the other is the candidate n.
    n = h_other if (h_other - h).norm() > (h_new - h).norm() else h_new
    old, new = (h - n).flatten(), (h_new - n).flatten()
    return float(old @ new / (old @ old))


A5_TOLERANCE_ULPS = 64


def decide_a5(m: dict) -> Verdict:
    worst = max(m["rows"], key=lambda r: r["max_abs_diff_note_form_flipped"] / r["eps"])
    equivalent = all(r["max_abs_diff_note_form_flipped"] <= A5_TOLERANCE_ULPS * r["eps"]
                     for r in m["rows"])
    share = m["old_state_share"]
    # The sentence: z acts as the forget gate, i.e. z -> 1 keeps the old state.
    sentence_fits_note = share["note_z_bias_+30"] > 0.5
    sentence_fits_pytorch = share["pytorch_z_bias_+30"] > 0.5
    if not equivalent:
        return Verdict(NOT_SUPPORTED, (
            f"the notes' update rule with z -> 1-z does not reproduce {worst['impl']} "
            f"(max |diff| {worst['max_abs_diff_note_form_flipped']:.3g})"))
    if sentence_fits_note:
        return Verdict(SUPPORTED, "equivalent under z -> 1-z, and the gate roles match")
    condition = "PyTorch's convention h = (1-z) n + z h_prev" if sentence_fits_pytorch else "none"
    return Verdict(DEPENDS, (
        f"the update rule is PyTorch's GRU under z -> 1-z (every implementation within "
        f"{A5_TOLERANCE_ULPS} ulp; worst {worst['max_abs_diff_note_form_flipped']:.2g} in "
        f"{worst['impl']} {worst['dtype']}), but the sentence '(1-z) input gate, z forget "
        f"gate' holds only under {condition}: in the notes' own formula z -> 1 keeps "
        f"{share['note_z_bias_+30']:.2f} of the old state, i.e. z is the input gate. The "
        f"candidate formula's reset-before form is a different model (max |diff| "
        f"{m['max_abs_diff_reset_before_vs_after']:.2g} with the same weights)"))


def against_a5(m: dict) -> str:
    s = m["old_state_share"]
    return (f"PyTorch documents h_t = (1 - z) n + z h_(t-1), where z near 1 keeps the old "
            f"state; here pinning z to 1 keeps {s['pytorch_z_bias_+30']:.2f} of it in that "
            f"form and {s['note_z_bias_+30']:.2f} in the notes' own formula, so we agree with "
            f"the documentation and the notes' sentence follows it, not their formula. Cho "
            f"et al. 2014 apply the reset gate before the recurrent product; that form differs "
            f"from PyTorch's by up to {m['max_abs_diff_reset_before_vs_after']:.2g} here with "
            "the same weights, as expected of two different models.")


def summarize_a5(m: dict) -> str:
    s = m["old_state_share"]
    return "\n".join([
        f"Random weights (PyTorch's init), I={m['sizes']['I']}, H={m['sizes']['H']}, "
        f"T={m['sizes']['T']}, B={m['sizes']['B']}, seed {m['seed']}; the notes' form is a "
        "float64 module written from their equations, loaded with PyTorch's weights after "
        "negating the update gate's rows (z -> 1 - z).",
        "",
        table(["implementation", "device", "dtype", "max abs diff vs notes' form", "dtype eps"],
              [[r["impl"], r["device"], r["dtype"], r["max_abs_diff_note_form_flipped"],
                r["eps"]] for r in m["rows"]]),
        "",
        f"- Same weights without the flip: max abs diff "
        f"{m['max_abs_diff_same_weights_unflipped']:.3g} (so the flip is what maps one form "
        "to the other).",
        f"- Reset before the recurrent product (the notes' candidate formula, Cho et al. 2014) "
        f"vs after (PyTorch, cuDNN, the notes' prose), same weights: max abs diff "
        f"{m['max_abs_diff_reset_before_vs_after']:.3g}: a different model, not a "
        "reparametrisation.",
        f"- Share of h_(t-1) kept in h_t with z pinned to 1: notes' form "
        f"{s['note_z_bias_+30']:.3f}, PyTorch's form {s['pytorch_z_bias_+30']:.3f}; pinned to "
        f"0: {s['note_z_bias_-30']:.3f} and {s['pytorch_z_bias_-30']:.3f}.",
    ])


CLAIMS = [
    Claim(
        id="A1", notes=(f"{NOTE_004} §summary 2", f"{NOTE_004} §appendix 9"),
        statement=("Counting weight matrices, a simple RNN has one and an LSTM four (one for "
                   "each of the forget, input and output gates and one for the candidate); "
                   "each of the four has H rows and H+I columns."),
        method=("Every registered implementation builds its RNN, GRU and LSTM layers at every "
                "(I, H) of a grid of input and hidden sizes, with no training; the parameters "
                "are counted and the weight tensors split into per-gate matrices, then held "
                "against G(H(I+H)+2H): G gate blocks of H x (H+I), each with the two bias "
                "vectors of PyTorch's and cuDNN's layout (a one-bias layout has H fewer per "
                "gate)."),
        rule=("supported if every registered implementation, for every cell and every (I, H) "
              "of the grid, has exactly G(H(I+H)+2H) parameters (G = 1, 3, 4 for RNN, GRU, "
              "LSTM) and its weights split into G matrices of H x (H+I); otherwise not "
              "supported."),
        measure=measure_a1, decide=decide_a1, summarize=summarize_a1, plot=plot_parameters),
    Claim(
        id="A2", notes=(f"{NOTE_002} §4.2", f"{NOTE_003} §GRU"),
        statement="At the same input and hidden sizes, a GRU is a smaller model than an LSTM.",
        method=("The GRU/LSTM ratio of parameter counts at equal (I, H), per implementation, "
                "over the same builds and grid as A1; by the formula it is 3/4 at every size."),
        rule=("supported if GRU/LSTM parameters at equal (I, H) are below 1 in every "
              "implementation and grid point (the formula says exactly 3/4); otherwise not "
              "supported."),
        measure=measure_a2, decide=decide_a2, summarize=summarize_a2),
    Claim(
        id="A3", notes=(f"{NOTE_004} §summary 3",),
        statement=("The LSTM's memory cell c is as long as the hidden and the input vector "
                   "together: H+I numbers."),
        method=("Every implementation's LSTM runs a short random sequence at several (I, H) "
                "with I different from H; the shape of the final cell state c_T is read next "
                "to that of h_T."),
        rule=("supported if c_T has H+I entries in every implementation; not supported if it "
              "has H in every one; depends otherwise."),
        measure=measure_a3, decide=decide_a3, summarize=summarize_a3),
    Claim(
        id="A4", notes=(f"{NOTE_002} §4.1",),
        statement=("Per step, an LSTM reads x, h and c and passes on the pair (h, c), while a "
                   "GRU reads x and h and passes on h alone, which is its output as well."),
        method=("For every implementation of both cells: each of x, the initial h and (LSTM) "
                "the initial c is perturbed in turn to see whether the output moves; the "
                "states returned are counted and, for the GRU, compared with the last output; "
                "a state of the wrong arity (h alone to the LSTM, a pair to the GRU) must be "
                "refused."),
        rule=("supported if, in every implementation, the LSTM's output changes when x, h or "
              "c changes and it returns (h, c), the GRU's when x or h changes and it returns h "
              "alone, equal to its last output, and a state of the other arity is refused; "
              "otherwise not supported."),
        measure=measure_a4, decide=decide_a4, summarize=summarize_a4),
    Claim(
        id="A5", notes=(f"{NOTE_002} §3", f"{NOTE_003} §GRU"),
        statement=("The notes write the GRU's new state as h_t = (1-z) h_(t-1) + z h~ and "
                   "then describe (1-z) as the input gate and z as the forget gate."),
        method=("A float64 GRU written from the notes' equations is loaded with random "
                "PyTorch-layout weights whose update-gate rows are negated (turning z into "
                "1-z) and compared with every implementation, which follow PyTorch's form "
                "h_t = (1-z) n + z h_(t-1). Then z is pinned to 0 and to 1 through its bias "
                "in each form, to see which setting keeps the old state; and a variant that "
                "applies the reset gate before the recurrent product (not after it, as "
                "PyTorch and cuDNN do) shows that placement changes the model."),
        rule=(f"not supported if the notes' update rule, loaded with PyTorch's weights after "
              f"negating the update gate (z -> 1-z), differs from any implementation by more "
              f"than {A5_TOLERANCE_ULPS} ulp of its dtype; supported if it matches and, in "
              "the notes' own form, pinning z to 1 keeps the old state (z a forget gate); "
              "depends (on the convention) if it matches but z -> 1 keeps the old state only "
              "in PyTorch's form."),
        anchors=(
            Anchor("Cho et al. 2014", "the GRU as first proposed applies the reset gate to "
                   "h_(t-1) before the recurrent matrix product; PyTorch and cuDNN apply it "
                   "to the product ('reset after'), a different model with the same "
                   "parameter count"),
            Anchor("PyTorch documentation (torch.nn.GRU)", "h_t = (1 - z_t) * n_t + z_t * "
                   "h_(t-1): z near 1 keeps the old state, so in this convention z acts as "
                   "the forget gate and 1-z as the input gate"),
        ),
        against=against_a5, measure=measure_a5, decide=decide_a5, summarize=summarize_a5),
]
