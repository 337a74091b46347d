"""The generated tasks against oracles written independently of the generators."""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.training.tasks import (
    ORDER_SYMBOLS,
    REBER_SYMBOLS,
    AddingProblem,
    CopyMemory,
    EmbeddedReber,
    TemporalOrder,
    make_task,
    reber_legal_next,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- adding, Arjovsky et al. 2016 form -----------------------------------------------------


def test_adding_target_is_the_sum_of_the_marked_values_one_marker_per_half():
    T, B = 37, 200
    batch = make_task("adding", T=T).sample(B, gen(1))
    assert batch.inputs.shape == (T, B, 2)
    values, markers = batch.inputs[..., 0], batch.inputs[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    for b in range(B):
        marked = markers[:, b].nonzero().flatten().tolist()
        assert len(marked) == 2
        assert marked[0] < T // 2 <= marked[1]
        assert batch.targets[b].item() == pytest.approx(
            values[marked[0], b].item() + values[marked[1], b].item(), abs=1e-6)
    assert (batch.lengths == T).all()


def test_adding_markers_cover_each_half():
    T = 10
    markers = make_task("adding", T=T).sample(4000, gen(2)).inputs[..., 1]
    assert (markers.sum(1) > 0).all()   # every position gets marked sometimes
    assert (markers[: T // 2].sum(0) == 1).all() and (markers[T // 2:].sum(0) == 1).all()


def test_adding_baseline_is_the_variance_of_the_target():
    # Predicting the mean (1) gives MSE Var(X1 + X2) = 2/12. 200k draws: standard error of
    # the sample variance ~ 0.167 * sqrt(0.8 / 2e5) ~ 3e-4; 3e-3 is ten of those.
    task = make_task("adding", T=20)
    targets = task.sample(200_000, gen(3)).targets.double()
    assert task.baseline_loss() == 1 / 6
    assert ((targets - 1) ** 2).mean().item() == pytest.approx(1 / 6, abs=3e-3)
    batch = task.sample(1000, gen(4))
    constant = torch.ones(1000, 1)
    assert task.baseline_loss(batch) == pytest.approx(task.loss(constant, batch).item())
    assert task.baseline_loss(batch) != 1 / 6


def test_adding_success_rule():
    task = make_task("adding", T=10)
    assert task.solved({"loss": 0.0099}) and not task.solved({"loss": 0.01})


# -- adding, Hochreiter & Schmidhuber 1997 form --------------------------------------------


def test_adding_1997_structure_and_target():
    T, B = 40, 300
    batch = make_task("adding1997", T=T).sample(B, gen(5))
    assert batch.inputs.shape == (T + T // 10, B, 2)
    values, markers = batch.inputs[..., 0], batch.inputs[..., 1]
    for b in range(B):
        L = batch.lengths[b].item()
        assert T <= L <= T + T // 10
        assert (batch.inputs[L:, b] == 0).all()   # padding after the end
        assert ((values[:L, b] >= -1) & (values[:L, b] <= 1)).all()
        marked = (markers[:, b] == 1).nonzero().flatten().tolist()
        assert len(marked) == 2
        assert any(m < 10 for m in marked)
        assert all(m < T // 2 - 1 for m in marked)
        for end in (0, L - 1):
            if end not in marked:
                assert markers[end, b] == -1
        others = [t for t in range(1, L - 1) if t not in marked]
        assert (markers[others, b] == 0).all()
        if 0 in marked:
            assert values[0, b] == 0
        x1, x2 = (values[m, b].item() for m in marked)
        assert batch.targets[b].item() == pytest.approx(0.5 + (x1 + x2) / 4, abs=1e-6)


def test_adding_1997_baseline_and_correctness():
    task = make_task("adding1997", T=30)
    batch = task.sample(200_000, gen(6))
    assert ((batch.targets.double() - 0.5) ** 2).mean().item() == pytest.approx(
        task.baseline_loss(), abs=1e-3)
    assert task.baseline_loss(batch) == pytest.approx(
        task.loss(torch.full((200_000, 1), 0.5), batch).item(), rel=1e-5)
    # 1997: a sequence is correct if |error| < 0.04.
    outputs = (batch.targets + torch.where(torch.arange(200_000) % 2 == 0, 0.039, 0.041))
    metrics = task.metrics(outputs.unsqueeze(1), batch)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert not task.solved(metrics)
    assert task.solved(task.metrics(batch.targets.unsqueeze(1), batch))


# -- copy memory ---------------------------------------------------------------------------


def test_copy_layout():
    T, B = 15, 50
    task = make_task("copy", T=T)
    batch = task.sample(B, gen(7))
    steps = T + 20
    assert batch.inputs.shape == (steps, B, 10) and batch.targets.shape == (steps, B)
    tokens = batch.inputs.argmax(-1)
    assert (batch.inputs.sum(-1) == 1).all()
    symbols = tokens[:10]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert (tokens[10:T + 9] == 0).all()             # T - 1 blanks
    assert (tokens[T + 9] == 9).all()                # the delimiter
    assert (tokens[T + 10:] == 0).all()              # 10 blanks while writing out
    assert (batch.targets[: T + 10] == 0).all()
    assert torch.equal(batch.targets[T + 10:], symbols)


def test_copy_baseline_is_the_memoryless_loss():
    T = 25
    task = make_task("copy", T=T)
    assert task.baseline_loss() == pytest.approx(10 * math.log(8) / (T + 20))
    batch = task.sample(64, gen(8))
    # Blank for certain, then uniform over the 8 categories: exp(-40) of error.
    logits = torch.full((T + 20, 64, 9), -40.0)
    logits[: T + 10, :, 0] = 40.0
    logits[T + 10:, :, 1:] = 0.0
    assert task.loss(logits, batch).item() == pytest.approx(task.baseline_loss(), rel=1e-5)
    assert task.metrics(logits, batch)["accuracy"] < 0.5


def test_copy_accuracy_counts_recalled_symbols():
    task = make_task("copy", T=5)
    batch = task.sample(20, gen(9))
    logits = F.one_hot(batch.targets, 9).float() * 10
    assert task.metrics(logits, batch)["accuracy"] == 1.0
    logits[-1, :, :] = 0
    logits[-1, :, 0] = 10   # last recalled symbol always wrong (blank)
    assert task.metrics(logits, batch)["accuracy"] == pytest.approx(0.9)
    assert not task.solved(task.metrics(logits, batch))


# -- embedded Reber grammar ----------------------------------------------------------------

_A3 = "(XT*VP)*(S|XT*VV)"            # inner states 3 -> end, written out by hand
_INNER = f"B(TS*X{_A3}|PT*V(V|P{_A3}))E"
EMBEDDED_REBER = re.compile(f"B(T{_INNER}T|P{_INNER}P)E")


def _strings(batch):
    strings = []
    for b in range(batch.batch_size):
        L = batch.lengths[b].item()
        string = "".join(REBER_SYMBOLS[i] for i in batch.inputs[:L, b].argmax(-1))
        strings.append(string + REBER_SYMBOLS[batch.targets[L - 1, b]])
    return strings


def test_reber_strings_are_accepted_by_the_grammar():
    batch = EmbeddedReber().sample(500, gen(10))
    strings = _strings(batch)
    assert all(EMBEDDED_REBER.fullmatch(s) for s in strings)
    assert len(set(strings)) > 50
    assert {s[1] for s in strings} == {"T", "P"}
    for b, s in enumerate(strings):
        assert batch.lengths[b] == len(s) - 1
        assert (batch.inputs[len(s) - 1:, b] == 0).all()


def test_reber_legal_next_by_hand():
    string = "BTBTXSETE"
    expected = ["TP", "B", "TP", "SX", "XS", "E", "T", "E", ""]
    for k, legal in enumerate(expected, start=1):
        assert reber_legal_next(string[:k]) == frozenset(legal)
    assert reber_legal_next("BPBPVV") == frozenset("E")
    assert reber_legal_next("BPBPVVE") == frozenset("P")
    with pytest.raises(ValueError, match="not a prefix"):
        reber_legal_next("BTBTXSETP")


def test_reber_legal_sets_match_what_the_grammar_produces():
    # Independent oracle: for every prefix seen often, the continuations seen in many
    # sampled strings are exactly the legal set (a missed 1/2 branch has p < 2**-40).
    batch = EmbeddedReber().sample(3000, gen(11))
    strings = _strings(batch)
    seen: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for s in strings:
        for k in range(1, len(s)):
            seen.setdefault(s[:k], set()).add(s[k])
            counts[s[:k]] = counts.get(s[:k], 0) + 1
    frequent = [p for p, n in counts.items() if n >= 40]
    assert len(frequent) > 20
    for prefix in frequent:
        assert reber_legal_next(prefix) == frozenset(seen[prefix]), prefix
    for b, s in enumerate(strings[:200]):
        for t in range(len(s) - 1):
            legal = {REBER_SYMBOLS[i] for i in batch.legal[t, b].nonzero().flatten().tolist()}
            assert legal == set(reber_legal_next(s[: t + 1]))


def test_reber_accuracy_and_baselines():
    task = EmbeddedReber()
    batch = task.sample(300, gen(12))
    # The ideal predictor: uniform over the legal symbols.
    ideal = torch.where(batch.legal, 0.0, -50.0)
    metrics = task.metrics(ideal, batch)
    assert metrics["accuracy"] == 1.0 and task.solved(metrics)
    tokens = batch.lengths.sum().item()
    assert task.baseline_loss(batch) - metrics["loss"] == pytest.approx(
        300 * math.log(2) / tokens, rel=1e-6)
    # Forget the outer symbol: T and P equally likely at the second-to-last step.
    forgetful = ideal.clone()
    columns = torch.arange(300)
    forgetful[batch.lengths - 2, columns, REBER_SYMBOLS.index("T")] = 0.0
    forgetful[batch.lengths - 2, columns, REBER_SYMBOLS.index("P")] = 0.0
    assert task.metrics(forgetful, batch)["accuracy"] == 0.0
    assert task.loss(forgetful, batch).item() == pytest.approx(task.baseline_loss(batch),
                                                                rel=1e-6)
    with pytest.raises(ValueError, match="pass the batch"):
        task.baseline_loss()


# -- temporal order ------------------------------------------------------------------------


def test_temporal_order_labels_and_layout():
    T, B = 100, 400
    batch = TemporalOrder(T).sample(B, gen(13))
    classes = {"XX": 0, "XY": 1, "YX": 2, "YY": 3}
    for b in range(B):
        L = batch.lengths[b].item()
        assert 100 <= L <= 110
        s = "".join(ORDER_SYMBOLS[i] for i in batch.inputs[:L, b].argmax(-1))
        assert (batch.inputs[:L, b].sum(-1) == 1).all() and (batch.inputs[L:, b] == 0).all()
        assert s[0] == "E" and s[-1] == "B"
        where = [t for t, c in enumerate(s) if c in "XY"]
        assert len(where) == 2
        assert 10 <= where[0] <= 20 and 50 <= where[1] <= 60
        assert set(s[1:-1]) - set("XY") <= set("abcd")
        assert batch.targets[b].item() == classes[s[where[0]] + s[where[1]]]
    assert set(batch.targets.tolist()) == {0, 1, 2, 3}
    assert set(batch.lengths.tolist()) == set(range(100, 111))


def test_temporal_order_baseline():
    task = TemporalOrder(40)
    batch = task.sample(8, gen(14))
    assert task.baseline_loss() == pytest.approx(math.log(4))
    assert task.loss(torch.zeros(8, 4), batch).item() == pytest.approx(math.log(4))
    logits = F.one_hot(batch.targets, 4).float()
    assert task.solved(task.metrics(logits, batch))


# -- common properties ---------------------------------------------------------------------

TASK_PARAMS = st.one_of(
    st.builds(lambda T: ("adding", {"T": T}), st.integers(2, 60)),
    st.builds(lambda T: ("adding1997", {"T": T}), st.integers(22, 80)),
    st.builds(lambda T, S, K: ("copy", {"T": T, "n_symbols": S, "n_categories": K}),
              st.integers(1, 40), st.integers(1, 6), st.integers(2, 9)),
    st.just(("reber", {})),
    st.builds(lambda T: ("temporal_order", {"T": T}), st.integers(20, 80)),
)


@settings(max_examples=40)
@given(params=TASK_PARAMS, B=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_shapes_dtypes_and_seeding(params, B, seed):
    name, kwargs = params
    task = make_task(name, **kwargs)
    batch = task.sample(B, gen(seed))
    steps = batch.inputs.shape[0]
    assert batch.inputs.shape == (steps, B, task.input_size)
    assert batch.inputs.dtype == torch.float32
    assert batch.lengths.shape == (B,) and batch.lengths.max() <= steps
    if task.per_step:
        assert batch.targets.shape == (steps, B) and batch.targets.dtype == torch.int64
        assert batch.targets.max() < task.output_size
    elif name.startswith("adding"):
        assert batch.targets.shape == (B,) and batch.targets.dtype == torch.float32
    else:
        assert batch.targets.shape == (B,) and batch.targets.max() < task.output_size
    again = task.sample(B, gen(seed))
    assert torch.equal(batch.inputs, again.inputs) and torch.equal(batch.targets, again.targets)
    assert task.describe()["task"] == name


def test_different_seeds_give_different_data():
    task = make_task("adding", T=50)
    assert not torch.equal(task.sample(4, gen(0)).inputs, task.sample(4, gen(1)).inputs)


@pytest.mark.parametrize("name,params,message", [
    ("adding", {"T": 1}, "'T' must be an int >= 2"),
    ("adding", {"T": 10.0}, "'T' must be an int"),
    ("adding", {"T": True}, "'T' must be an int"),
    ("adding1997", {"T": 21}, "'T' must be an int >= 22"),
    ("copy", {"T": 0}, "'T' must be an int >= 1"),
    ("copy", {"T": 5, "n_categories": 1}, "'n_categories' must be an int >= 2"),
    ("temporal_order", {"T": 19}, "'T' must be an int >= 20"),
    ("sorting", {"T": 5}, "unknown task 'sorting'; known tasks: adding"),
])
def test_bad_parameters_are_named(name, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_task(name, **params)


def test_bad_sample_arguments():
    task = CopyMemory(T=5)
    with pytest.raises(ValueError, match="'batch_size' must be an int >= 1, got 0"):
        task.sample(0, gen())
    with pytest.raises(TypeError, match="'generator' must be a torch.Generator, got int"):
        task.sample(3, 0)
    with pytest.raises(ValueError, match="'form' must be one of"):
        AddingProblem(T=10, form="1997")
    with pytest.raises(TypeError, match="bad parameters"):
        make_task("reber", T=10)
