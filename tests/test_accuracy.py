"""The long-dependency accuracy sweep (bench.claims.accuracy): its plan (learning-rate search,
sweep, cross-implementation runs), the choice of rates, its statistics, its files, and its
behaviour under failures, interruptions and bad options. Training is faked except where a
test measures it (`estimate_cost`)."""

import dataclasses
import json
import math
import platform

import pytest
import torch

from bench import environment
from bench.claims import accuracy
from bench.environment import fingerprint
from bench.training.trainer import parameter_count

SMOKE = accuracy.PROFILES["smoke"]
ARGS = dict(threads=1, command=["test"])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(config) -> str:
    """The MODELS name of a training config."""
    if config.irnn:
        return "irnn"
    return "lstm_fb1" if config.forget_bias is not None else config.cell


def _distinct(runs) -> set[str]:
    return {repr(run.inputs()) for run in runs}


def _result(loss=0.1, *, best=None, solved_at=None, test_solved=False, diverged=False,
            accuracy_=None, baseline=0.16, n_parameters=100, curve=None):
    """What `train(...).to_dict()` returns, made up: `best` is the lowest validation loss
    (default `loss`), `loss` the test loss of the model kept."""
    best = loss if best is None else best
    evals = [{"step": 0, "loss": 1.0}, {"step": 20, "loss": best}]
    if diverged:
        evals.append({"step": 30, "loss": math.nan})
    test = {"step": 20, "loss": loss, "baseline_loss": baseline, "solved": test_solved}
    if accuracy_ is not None:
        test["accuracy"] = accuracy_
    return {"task": {}, "n_parameters": n_parameters, "baseline_loss": baseline,
            "curve": curve or [{"step": 20, "loss": best, "grad_norm_max": 1.0}],
            "evals": evals, "test": test, "steps_done": 30 if diverged else 40,
            "steps_to_threshold": solved_at, "diverged": diverged,
            "divergence": "validation loss nan" if diverged else None, "seconds": 1.0,
            "cpu_seconds": 1.0, "final": evals[-1], "solved": solved_at is not None}


#: The rate the fake training prefers: the lowest validation loss at it.
def _preferred(model: str) -> float:
    return 3e-2 if model == "gru" else 1e-2


def _fake_runs(monkeypatch, stop_at=None, fail=lambda task, config: False):
    """Fake training: record each run's config; raise KeyboardInterrupt at the `stop_at`-th
    (a kill), RuntimeError for the runs where `fail(task, config)`. Each model's validation
    loss is lowest at `_preferred`'s rate."""
    executed = []

    def fake(task, T, config, threads):
        executed.append(config)
        if len(executed) == stop_at:
            raise KeyboardInterrupt
        if fail(task, config):
            raise RuntimeError("training broke")
        loss = 0.05 if config.lr == _preferred(_model(config)) else 0.09
        return {**_result(loss), "config": dataclasses.asdict(config)}

    monkeypatch.setattr(accuracy, "_execute", fake)
    return executed


def _tiny_profile(**changes):
    return dataclasses.replace(SMOKE, seeds=(0,), **changes)


# -- the plan ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(accuracy.PROFILES))
def test_profile_plans_search_sweep_and_cross_runs(name):
    profile = accuracy.PROFILES[name]
    search = accuracy.search_plan(profile)
    runs = accuracy.plan(profile)
    sweep = [r for r in runs if r.section == "sweep"]
    cross = [r for r in runs if r.section == "cross_impl"]
    # search: tasks x models x rates; sweep: seeds x lengths (all tasks) x (models + matched)
    lengths = sum(len(plan_.steps) for plan_ in profile.tasks)
    assert len(search) == len(profile.tasks) * len(profile.models) * len(profile.lr_grid)
    assert len(sweep) == len(profile.seeds) * lengths * (len(profile.models)
                                                         + len(profile.matched))
    if name == "smoke":                                  # the size the other tests rely on
        assert (len(search), len(sweep), len(cross)) == (2 * 5 * 2, 2 * 2 * (5 + 1), 0)
    assert len(runs) == len(sweep) + len(cross)
    keys = [r.key for r in search + runs]
    assert len(set(keys)) == len(keys)

    # The search: every rate of the grid per task and model, at the task's first length.
    assert {r.section for r in search} == {"search"}
    for plan_ in profile.tasks:
        T, steps = plan_.steps[0]
        for model in profile.models:
            mine = [r for r in search if r.task == plan_ and r.model == model]
            assert [r.config.lr for r in mine] == list(profile.lr_grid)
            for r in mine:
                assert (r.T, r.config.steps, r.seed, r.sizing) == (T, steps, profile.seeds[0],
                                                                    "equal")
                assert r.config.hidden_size == profile.hidden_size
                T_label = "" if T is None else f"T{T}"
                assert r.key == f"search/{plan_.task}{T_label}/{model}/lr{r.config.lr:g}"

    # The sweep: every model on every task and length, the matched ones twice, every seed.
    expected = {(plan_.task, T, sizing, model, seed)
                for plan_ in profile.tasks for T in plan_.lengths for seed in profile.seeds
                for model in profile.models
                for sizing in ("equal", "matched") if sizing == "equal"
                or model in profile.matched}
    assert {(r.task.task, r.T, r.sizing, r.model, r.seed) for r in sweep} == expected
    assert [r.seed for r in sweep] == sorted(r.seed for r in sweep)   # seed by seed
    targets = {}
    for run in sweep:
        T_label = "" if run.T is None else f"T{run.T}"
        assert run.key == f"sweep/{run.task.task}{T_label}/{run.sizing}/{run.model}/seed{run.seed}"
        assert run.config.steps == dict(run.task.steps)[run.T]
        assert run.config.lr == profile.lr_grid[0]                   # no rates given
        assert run.config.impl == dict(profile.impl)[run.model]
        assert run.config.seed == run.seed
        if run.sizing == "equal":
            assert run.config.hidden_size == profile.hidden_size
            continue
        if (run.task.task, run.T) not in targets:
            task = run.task.make(run.T)
            targets[run.task.task, run.T] = (task, parameter_count(
                "lstm", task.input_size, profile.hidden_size, task.output_size))
        task, target = targets[run.task.task, run.T]
        H = run.config.hidden_size

        def gap(h, run=run, task=task, target=target):
            return abs(parameter_count(run.config.cell, task.input_size, h, task.output_size)
                       - target)

        assert gap(H) <= min(gap(H - 1), gap(H + 1)), run.key
    irnn = [r for r in sweep if r.model == "irnn"]
    assert not irnn or all(r.config.irnn and r.config.cell == "rnn_relu" for r in irnn)
    fb1 = [r for r in sweep if r.model == "lstm_fb1"]
    assert not fb1 or all(r.config.cell == "lstm" and r.config.forget_bias == 1.0 for r in fb1)
    assert all(r.config.forget_bias is None for r in sweep if r.model == "lstm")

    # The same model through every trainable implementation.
    if not profile.cross_cells:
        assert cross == []
        return
    assert {r.config.cell for r in cross} == set(profile.cross_cells)
    assert {r.config.impl for r in cross} >= {"reference", "torch", "scripted"}
    for r in cross:
        assert r.config.dtype == ("float64" if r.config.impl == "reference" else "float32")
        assert (r.task.task, r.T, r.config.steps, r.seed) == ("adding", profile.cross_T,
                                                             profile.cross_steps, 0)
        assert not r.config.stop_on_success and r.config.log_every == 1
        assert r.key == f"cross_impl/{r.config.cell}/{r.config.impl}"


def test_the_sweep_trains_each_model_at_its_chosen_rate():
    profile = accuracy.PROFILES["quick"]
    rates = {task.task: {model: {"lr": 10.0 ** -(k + 1) + 0.5 * i}
                         for k, model in enumerate(profile.models)}
             for i, task in enumerate(profile.tasks)}
    runs = accuracy.plan(profile, rates)
    assert {r.section for r in runs} == {"sweep", "cross_impl"}
    for run in runs:              # the matched size and the cross runs take the model's rate
        task = "adding" if run.section == "cross_impl" else run.task.task
        assert run.config.lr == rates[task][run.model]["lr"], run.key


def test_the_search_winners_are_the_first_seeds_sweep_runs():
    """Same inputs, same cell: the sweep does not train the search's winners again."""
    search = accuracy.search_plan(SMOKE)
    rates = {t.task: {m: {"lr": SMOKE.lr_grid[-1]} for m in SMOKE.models} for t in SMOKE.tasks}
    sweep = [r for r in accuracy.plan(SMOKE, rates) if r.section == "sweep"]
    winners = [r for r in search if r.config.lr == SMOKE.lr_grid[-1]]
    first = [r for r in sweep if r.seed == SMOKE.seeds[0] and r.sizing == "equal"]
    assert _distinct(winners) == _distinct(first) and len(winners) == len(first) == 10
    assert len(_distinct(search + sweep)) == len(search) + len(sweep) - len(winners)


def test_a_plan_with_an_unregistered_implementation_names_it():
    profile = dataclasses.replace(SMOKE, impl=(*SMOKE.impl[:-1], ("gru", "nosuch")))
    for make in (accuracy.search_plan, accuracy.plan):
        with pytest.raises(ValueError, match=r"trains with \['nosuch'\], which is not"):
            make(profile)


def test_cells_are_named_by_their_inputs_and_the_code(tmp_path):
    search = accuracy.search_plan(accuracy.PROFILES["quick"])
    runs = accuracy.plan(accuracy.PROFILES["quick"])
    store = accuracy.cell_store(tmp_path)
    name = lambda run: store.name(run.inputs())  # noqa: E731
    assert len({name(run) for run in runs}) == len(runs)
    assert len({name(run) for run in search + runs}) == len(_distinct(search + runs))
    again = dataclasses.replace(runs[0], key="elsewhere", sizing="matched", section="search")
    assert name(again) == name(runs[0])                   # the inputs alone name it
    other = dataclasses.replace(runs[0], config=dataclasses.replace(runs[0].config, lr=0.5))
    assert name(other) != name(runs[0])
    params = dataclasses.replace(runs[0], task=dataclasses.replace(runs[0].task,
                                                                   params=(("n_symbols", 3),)))
    assert name(params) != name(runs[0])
    newer = accuracy.CellStore(store.directory, "another-version")
    assert newer.name(runs[0].inputs()) != name(runs[0])


def test_a_profiles_cost_is_its_measured_step_time_times_its_budget():
    cost = accuracy.estimate_cost(SMOKE, steps=3)
    distinct = _distinct(accuracy.search_plan(SMOKE) + accuracy.plan(SMOKE))
    assert cost["runs"] == len(distinct) == 34 == sum(r["runs"] for r in cost["rows"])
    assert {r["model"] for r in cost["rows"]} == set(accuracy.MODELS)
    rows = {(r["task"], r["model"], r["H"]): r for r in cost["rows"]}
    # Two rates searched, two seeds, the first seed's run at the first rate is both.
    assert rows[("adding", "rnn_tanh", 8)]["runs"] == 3
    matched = [r for r in cost["rows"] if r["model"] == "gru" and r["H"] != 8]
    assert [r["runs"] for r in matched] == [2, 2]             # adding and copy, two seeds
    for row in cost["rows"]:
        assert row["step_s"] > 0 and row["steps"] == 40
        evaluations = 40 // 20 + 1                   # smoke: 40 steps, evaluated every 20
        eval_steps = evaluations * math.ceil(64 / 8) / 3
        assert row["cpu_s"] == pytest.approx(row["runs"] * row["step_s"] * (40 + eval_steps))
    assert cost["cpu_hours"] == pytest.approx(sum(r["cpu_s"] for r in cost["rows"]) / 3600)
    text = "\n".join(accuracy.cost_lines(cost, "this machine"))
    assert "34 runs, at most" in text and "| adding | rnn_tanh | 10 | 8 | torch | 3 |" in text


# -- the choice of learning rates ----------------------------------------------------------


def test_the_rate_with_the_lowest_validation_loss_is_chosen_and_divergence_loses():
    profile = dataclasses.replace(SMOKE, tasks=SMOKE.tasks[:1], lr_grid=(1e-3, 3e-3, 1e-2),
                                  models=("rnn_tanh", "lstm", "gru", "irnn"))
    search = accuracy.search_plan(profile)
    made_up = {   # model -> one result per rate of the grid
        # A diverged run counts as infinite, though it was the best before it diverged.
        "rnn_tanh": [_result(0.05), _result(0.01, diverged=True), _result(0.08)],
        "lstm": [_result(0.07), _result(0.05), _result(0.05)],     # a tie: the smaller rate
        "gru": [_result(0.3), _result(0.2), _result(0.1)],
        "irnn": [_result(0.01, diverged=True)] * 3,                  # all diverged
    }
    records = {r.key: made_up[r.model][profile.lr_grid.index(r.config.lr)] for r in search}
    rates = accuracy.chosen_rates(search, records)
    assert {m: e["lr"] for m, e in rates["adding"].items()} == {
        "rnn_tanh": 1e-3, "lstm": 3e-3, "gru": 1e-2, "irnn": 1e-3}
    assert rates["adding"]["rnn_tanh"]["tried"] == [
        {"lr": 1e-3, "best_validation_loss": 0.05, "diverged": False},
        {"lr": 3e-3, "best_validation_loss": math.inf, "diverged": True},
        {"lr": 1e-2, "best_validation_loss": 0.08, "diverged": False}]
    # The best validation loss is the lowest evaluation, not the last one or the test loss.
    records = {key: _result(0.9, best=0.4 if "lr0.01" in key else 0.5) for key in records}
    assert {e["lr"] for e in accuracy.chosen_rates(search, records)["adding"].values()} == {1e-2}


def test_rates_are_chosen_per_task():
    search = accuracy.search_plan(SMOKE)
    records = {r.key: _result(0.05 if (r.task.task == "copy") == (r.config.lr == 3e-2)
                              else 0.09) for r in search}
    rates = accuracy.chosen_rates(search, records)
    assert {t: {e["lr"] for e in by.values()} for t, by in rates.items()} == {
        "adding": {1e-2}, "copy": {3e-2}}
    assert set(rates["adding"]) == set(SMOKE.models)


# -- statistics ----------------------------------------------------------------------------


def _stored(task, model, T, seed, loss, *, sizing="equal", H=32, lr=1e-2, section="sweep",
            **result):
    """A record as the profile file holds it (identity, then the made-up result)."""
    cell = accuracy.MODELS[model]["cell"]
    record = {"key": f"{section}/{task}T{T}/{sizing}/{model}/seed{seed}", "section": section,
              "model": model, "sizing": sizing, "task_name": task, "T": T, "seed": seed,
              "config": {"hidden_size": H, "steps": 100, "cell": cell, "impl": "torch",
                         "dtype": "float32", "lr": lr},
              **_result(loss, n_parameters=parameter_count(cell, 2, H, 1), **result),
              "provenance": None}
    return record


def test_summary_medians_and_wilson_rates_by_hand():
    records = [
        # adding T=100, LSTM: two solved on the test set, one solved on validation only,
        # one diverged (whose kept model solved the test set: still a failure, no loss).
        _stored("adding", "lstm", 100, 0, 0.005, solved_at=700, test_solved=True),
        _stored("adding", "lstm", 100, 1, 0.004, solved_at=900, test_solved=True),
        _stored("adding", "lstm", 100, 2, 0.150, solved_at=300),
        _stored("adding", "lstm", 100, 3, 0.001, solved_at=100, test_solved=True,
                diverged=True),
        _stored("adding", "rnn_tanh", 100, 0, 0.165, baseline=0.17),
        _stored("adding", "rnn_tanh", 100, 1, 0.170, baseline=0.16),
        _stored("adding", "rnn_tanh", 100, 2, 0.001, diverged=True, baseline=0.15),
        _stored("adding", "gru", 100, 0, 0.160, sizing="matched", H=37),
        # the same model and length on another task is another row
        _stored("copy", "lstm", 100, 0, 0.2, accuracy_=0.9),
        _stored("copy", "lstm", 100, 1, 0.3, accuracy_=0.5),
        _stored("copy", "lstm", 100, 2, 0.4, accuracy_=0.7),
        _stored("copy", "irnn", 100, 0, 0.5, diverged=True),
        # not the sweep's: left out
        _stored("adding", "lstm", 100, 0, 9.0, section="search"),
        _stored("adding", "lstm", 100, 0, 9.0, section="cross_impl"),
    ]
    rows = accuracy.summarise(records)
    assert [(r["task"], r["sizing"], r["model"]) for r in rows] == [
        ("adding", "equal", "rnn_tanh"), ("adding", "equal", "lstm"),
        ("adding", "matched", "lstm"), ("adding", "matched", "gru"),
        ("copy", "equal", "irnn"), ("copy", "equal", "lstm")]
    by = {(r["task"], r["sizing"], r["model"]): r for r in rows}

    lstm = by[("adding", "equal", "lstm")]
    assert lstm["seeds"] == 4 and lstm["diverged"] == 1
    assert lstm["test_losses"] == [0.005, 0.004, 0.150]
    # Bootstrap medians of 3 values: each end value is the median of a resample with
    # probability 7/27, far above 2.5%, so the interval is [min, max].
    assert lstm["loss"] == {"n": 3, "median": 0.005, "ci95": [0.004, 0.150]}
    # 2 of 4 (the diverged seed counts): Wilson [0.150, 0.850].
    assert (lstm["success"]["k"], lstm["success"]["n"], lstm["success"]["rate"]) == (2, 4, 0.5)
    assert lstm["success"]["ci95"] == pytest.approx([0.1500, 0.8500], abs=1e-4)
    assert lstm["solved_steps"] == [700, 900] and lstm["steps_to_threshold"] == 800
    assert lstm["baseline"] == 0.16 and lstm["beats_baseline"]       # 0.150 < 0.16
    assert lstm["accuracy"] == {"n": 0, "median": None, "ci95": None}
    assert (lstm["hidden_size"], lstm["lr"], lstm["steps_budget"]) == (32, 1e-2, 100)
    assert lstm["n_parameters"] == parameter_count("lstm", 2, 32, 1)

    tanh = by[("adding", "equal", "rnn_tanh")]
    # Medians of resamples of two values: 0.165, 0.1675 or 0.170 (1/4, 1/2, 1/4).
    assert tanh["loss"]["median"] == pytest.approx(0.1675)
    assert tanh["loss"]["ci95"] == pytest.approx([0.165, 0.170])
    assert tanh["baseline"] == 0.16                        # the median of 0.17, 0.16, 0.15
    assert not tanh["beats_baseline"] and tanh["diverged"] == 1
    # 0 of 3: Wilson [0, z^2 / (3 + z^2)] = [0, 0.5615].
    assert tanh["success"]["k"] == 0 and tanh["success"]["ci95"] == pytest.approx(
        [0.0, 0.5615], abs=1e-4)
    assert tanh["steps_to_threshold"] is None

    # The LSTM is what the matched models are matched to: it appears among them too, on the
    # task and length where there are matched runs only.
    assert by[("adding", "matched", "lstm")]["seeds"] == 4
    assert by[("adding", "matched", "lstm")]["loss"] == lstm["loss"]
    gru = by[("adding", "matched", "gru")]
    assert gru["hidden_size"] == 37 and gru["loss"] == {"n": 1, "median": 0.16, "ci95": None}
    assert not gru["beats_baseline"]                       # no interval from one seed

    copy = by[("copy", "equal", "lstm")]
    assert copy["loss"]["median"] == 0.3 and copy["accuracy"]["median"] == 0.7
    assert copy["accuracy"]["n"] == 3 and copy["success"]["k"] == 0
    irnn = by[("copy", "equal", "irnn")]                   # every seed diverged
    assert irnn["loss"] == {"n": 0, "median": None, "ci95": None} and irnn["diverged"] == 1
    assert irnn["success"]["n"] == 1 and not irnn["beats_baseline"]
    assert irnn["test_losses"] == []


def test_the_reber_task_without_a_length_is_one_row_per_model():
    records = [_stored("reber", "gru", None, seed, 0.1 * (seed + 1), test_solved=seed < 2)
               for seed in range(3)]
    (row,) = accuracy.summarise(records)
    assert (row["task"], row["T"], row["success"]["k"], row["loss"]["median"]) == (
        "reber", None, 2, pytest.approx(0.2))


def _cross(impl, losses, solved_at=None):
    record = _stored("adding", "lstm", 50, 0, losses[-1], section="cross_impl",
                     solved_at=solved_at)
    record.update(key=f"cross_impl/lstm/{impl}", final={"step": len(losses), "loss": losses[-1]},
                  curve=[{"step": k + 1, "loss": v, "grad_norm_max": 1.0}
                         for k, v in enumerate(losses)])
    record["config"]["impl"] = impl
    return record


def test_cross_implementation_agreement_is_judged_on_the_early_gap_and_success():
    early = [0.2] * 50
    tol = accuracy.CROSS_IMPL_TOLERANCE
    records = [
        _cross("reference", early + [0.1, 0.005], solved_at=52),
        _cross("close", [v * (1 + tol / 2) for v in early] + [0.12, 0.006], solved_at=52),
        _cross("drifts", [v * (1 + 2 * tol) for v in early] + [0.1, 0.005], solved_at=52),
        _cross("unsolved", early + [0.1, 0.05]),
        _stored("adding", "lstm", 50, 0, 0.1),                 # a sweep run: not compared
    ]
    rows = {r["impl"]: r for r in accuracy.cross_impl_summary(records)}
    assert set(rows) == {"reference", "close", "drifts", "unsolved"}
    assert rows["reference"]["agrees"] and rows["reference"]["gap_first"] == 0
    assert rows["close"]["agrees"]                        # later gaps (20%) are not judged
    assert rows["close"]["gap_all"] == pytest.approx(0.2)
    assert rows["close"]["final_loss"] == 0.006
    assert not rows["drifts"]["agrees"]
    assert rows["drifts"]["gap_first"] == pytest.approx(2 * tol)
    assert not rows["unsolved"]["agrees"]
    without_reference = accuracy.cross_impl_summary(records[1:])
    assert all(r["agrees"] is None for r in without_reference)


# -- running a profile: search, then sweep; cells; resumption -------------------------------


def test_the_search_runs_first_and_a_second_call_computes_nothing(tmp_path, monkeypatch):
    executed = _fake_runs(monkeypatch)
    path = accuracy.run_profile(SMOKE, tmp_path, **ARGS)
    document = json.loads(path.read_text())
    search = accuracy.search_plan(SMOKE)
    assert executed[:len(search)] == [r.config for r in search]       # the search first
    chosen = {t: {m: e["lr"] for m, e in by.items()} for t, by in document["rates"].items()}
    assert chosen == {t.task: {m: _preferred(m) for m in SMOKE.models} for t in SMOKE.tasks}
    runs = accuracy.plan(SMOKE, document["rates"])
    assert all(r.config.lr == _preferred(r.model) for r in runs)
    winners = _distinct(r for r in search if r.config.lr == _preferred(r.model))
    # Then the sweep, but not its runs the search has already made.
    assert executed[len(search):] == [r.config for r in runs if repr(r.inputs()) not in winners]
    assert len(executed) == 34 == len(list((tmp_path / accuracy.CELLS).glob("*.json")))
    assert document["planned"] == document["present"] == len(document["runs"]) == 44
    assert [r["key"] for r in document["runs"]] == [r.key for r in search + runs]
    assert document["finished"] and document["schema"] == accuracy.SCHEMA
    commit = fingerprint([])["git"]["commit"]
    for record, run in zip(document["runs"], search + runs):
        assert (record["section"], record["task_name"], record["model"], record["T"]) == (
            run.section, run.task.task, run.model, run.T)
        assert record["config"] == dataclasses.asdict(run.config)
        where = record["provenance"]                     # where and how long, per run
        assert where["host"] == platform.node() and where["cores"] >= 1
        assert where["wall_s"] >= 0 and where["commit"] == commit
    before = path.read_bytes()
    accuracy.run_profile(SMOKE, tmp_path, **{**ARGS, "command": ["a reader"]})
    assert len(executed) == 34                            # every cell there: nothing to do
    assert path.read_bytes() == before                    # and the file is left as it was
    path.unlink()                                         # rebuilt from the cells alone
    accuracy.run_profile(SMOKE, tmp_path, **ARGS)
    again = json.loads(path.read_text())
    assert len(executed) == 34
    assert again["runs"] == document["runs"] and again["rates"] == document["rates"]
    accuracy.run_profile(SMOKE, tmp_path, retrain=True, **ARGS)
    assert len(executed) == 2 * 34                        # --retrain: each distinct run again


def test_an_interrupted_sweep_leaves_the_complete_file_and_keeps_its_runs(tmp_path,
                                                                          monkeypatch):
    profile = _tiny_profile()
    _fake_runs(monkeypatch)
    path = accuracy.run_profile(profile, tmp_path, **ARGS)
    before = path.read_bytes()
    _fake_runs(monkeypatch, stop_at=3)
    with pytest.raises(KeyboardInterrupt):          # a retrain, killed during its 3rd run
        accuracy.run_profile(profile, tmp_path, retrain=True, **ARGS)
    assert path.read_bytes() == before               # the complete file is as it was
    longer = _tiny_profile(tasks=(accuracy.TaskPlan("adding", ((10, 41),)),))
    _fake_runs(monkeypatch, stop_at=3)
    with pytest.raises(KeyboardInterrupt):           # the same with a new plan
        accuracy.run_profile(longer, tmp_path, **ARGS)
    assert path.read_bytes() == before
    executed = _fake_runs(monkeypatch)
    accuracy.run_profile(longer, tmp_path, **ARGS)
    search = accuracy.search_plan(longer)
    keys = [r.key for r in search + accuracy.plan(longer)]
    # 10 searched, the sweep's 5 equal-size runs among them, the matched GRU: 11 distinct,
    # 2 of them kept from the interrupted call.
    assert len(executed) == 11 - 2
    document = json.loads(path.read_text())
    assert [r["key"] for r in document["runs"]] == keys and document["finished"]
    assert {r["config"]["steps"] for r in document["runs"]} == {41}
    assert not list(tmp_path.rglob(".*.tmp.json"))
    ignored = tmp_path / accuracy.CELLS / ".gitignore"
    assert ignored.read_text().splitlines()[-1] == "*"


def _matched_adding(task, config):
    return task.task == "adding" and config.cell == "gru" and config.hidden_size != 8


def test_a_failing_run_is_named_and_the_other_cells_are_kept(tmp_path, monkeypatch):
    profile = _tiny_profile()      # one seed: 20 searched, 12 swept (10 of them searched)
    _fake_runs(monkeypatch, fail=_matched_adding)
    with pytest.raises(accuracy.SweepFailed,
                       match=r"1 of 32 runs failed \(sweep/addingT10/matched/gru/seed0\)"):
        accuracy.run_profile(profile, tmp_path, **ARGS)
    partial = json.loads((tmp_path / "smoke.json").read_text())  # no complete one to keep
    assert (partial["present"], partial["planned"], len(partial["runs"])) == (31, 32, 31)
    assert "sweep/addingT10/matched/gru/seed0" not in {r["key"] for r in partial["runs"]}
    assert "sweep/copyT5/matched/gru/seed0" in {r["key"] for r in partial["runs"]}
    assert len(list((tmp_path / accuracy.CELLS).glob("*.json"))) == 22 - 1
    executed = _fake_runs(monkeypatch)
    assert accuracy.main(["--profile", "smoke", "--out", str(tmp_path), "--no-report"]) == 0
    assert len(executed) == 34 - 21                  # smoke has two seeds: 34 distinct runs
    complete = (tmp_path / "smoke.json").read_bytes()
    assert json.loads(complete)["present"] == 44
    _fake_runs(monkeypatch, fail=lambda task, config: config.seed == 1)
    with pytest.raises(accuracy.SweepFailed):        # a partial retrain keeps the complete file
        accuracy.run_profile(SMOKE, tmp_path, retrain=True, **ARGS)
    assert (tmp_path / "smoke.json").read_bytes() == complete


def test_a_failing_search_run_stops_before_the_sweep(tmp_path, monkeypatch):
    def fail(task, config):
        return task.task == "copy" and config.cell == "rnn_tanh" and config.lr == 3e-2

    executed = _fake_runs(monkeypatch, fail=fail)
    with pytest.raises(accuracy.SweepFailed, match=r"1 runs of the learning-rate search failed "
                                                   r"\(search/copyT5/rnn_tanh/lr0.03\)"):
        accuracy.run_profile(SMOKE, tmp_path, **ARGS)
    assert len(executed) == 20                       # the whole search, no sweep run
    assert not (tmp_path / "smoke.json").exists()
    assert len(list((tmp_path / accuracy.CELLS).glob("*.json"))) == 19
    executed = _fake_runs(monkeypatch)
    accuracy.run_profile(SMOKE, tmp_path, **ARGS)
    assert len(executed) == 34 - 19
    assert executed[0].cell == "rnn_tanh" and executed[0].lr == 3e-2


def test_keep_earlier_adopts_the_runs_of_a_profile_file_without_cells(tmp_path, monkeypatch):
    profile = _tiny_profile()
    _fake_runs(monkeypatch)
    path = accuracy.run_profile(profile, tmp_path, **ARGS)
    first = json.loads(path.read_text())
    for cell in (tmp_path / accuracy.CELLS).glob("*.json"):
        cell.unlink()
    executed = _fake_runs(monkeypatch)
    accuracy.run_profile(profile, tmp_path, adopt=True, **ARGS)
    assert executed == []
    again = json.loads(path.read_text())
    assert again["earlier_environments"] == [first["environment"]]
    assert [r["provenance"] for r in again["runs"]] == [r["provenance"] for r in first["runs"]]
    assert again["runs"] == first["runs"] and again["rates"] == first["rates"]


def test_only_runs_of_matching_inputs_are_adopted(tmp_path):
    runs = accuracy.search_plan(SMOKE) + accuracy.plan(SMOKE)
    kept, changed, moved = runs[0], runs[1], runs[-1]
    done = [accuracy._record(run, _result(0.1)) for run in (kept, changed, moved)]
    done[1]["config"]["lr"] = 123.0            # planned differently now: must be rerun
    done[2]["task_name"] = "temporal_order"    # another task under the same key
    document = {"schema": accuracy.SCHEMA, "profile": dataclasses.asdict(SMOKE),
                "environment": fingerprint(["pytest"]), "earlier_environments": [{"old": 1}],
                "runs": done}
    path = tmp_path / "smoke.json"
    accuracy.write_json(path, document)
    assert [p.name for p in tmp_path.iterdir()] == ["smoke.json"]
    found, earlier = accuracy._adopt(path, runs)
    assert set(found) == {kept.key} and found[kept.key]["provenance"] is None
    assert earlier == [{"old": 1}, document["environment"]]
    assert accuracy._adopt(path, runs[1:]) == ({}, [])            # nothing adopted
    assert accuracy._adopt(tmp_path / "none.json", runs) == ({}, [])


def test_a_partial_file_is_reported_with_its_figures(tmp_path, monkeypatch):
    profile = accuracy.PROFILES["quick"]
    _fake_runs(monkeypatch, fail=lambda task, config: config.seed == 1)
    with pytest.raises(accuracy.SweepFailed):
        accuracy.run_profile(profile, tmp_path, command=["pytest"])
    document = json.loads((tmp_path / "quick.json").read_text())
    assert document["present"] < document["planned"]
    assert any(r["section"] == "cross_impl" for r in document["runs"])
    text = accuracy.write_report(tmp_path).read_text()
    assert f"{document['present']} of {document['planned']} runs" in text
    assert "(**partial**: run `pytest` again" in text
    for figure in ("quick_loss_vs_T.png", "quick_cross_impl.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 0
        assert f"(figures/{figure})" in text


# -- the command line and damaged files ----------------------------------------------------


@pytest.mark.parametrize("argv, option", [
    (["--jobs", "0"], "--jobs"), (["--jobs", "-1"], "--jobs"), (["--jobs", "nan"], "--jobs"),
    (["--jobs", "1.5"], "--jobs"), (["--jobs", "inf"], "--jobs"),
    (["--jobs", "100000"], "--jobs"), (["--threads", "0"], "--threads"),
    (["--threads", "-3"], "--threads"), (["--threads", "nan"], "--threads"),
    (["--threads", "100000"], "--threads"), (["--jobs", "2", "--threads", "1000"], "--threads"),
    (["--report-only", "--retrain"], "--retrain"),
    (["--report-only", "--keep-earlier"], "--keep-earlier"),
    (["--report-only", "--scheduler", "local"], "--scheduler"),
    (["--report-only", "--no-report"], "--no-report"),
])
def test_accuracy_options_out_of_range_are_named(argv, option, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(accuracy, "run_profile", lambda *a, **k: pytest.fail("it ran"))
    with pytest.raises(SystemExit) as exc:
        accuracy.main(["--profile", "quick", "--out", str(tmp_path), *argv])
    assert exc.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert "error:" in error and option in error


def test_jobs_times_threads_beyond_the_cores_is_refused(capsys, monkeypatch):
    monkeypatch.setattr(environment, "usable_cores", lambda: 2)
    with pytest.raises(SystemExit):
        accuracy.main(["--jobs", "2", "--threads", "2", "--report-only"])
    assert "--jobs 2 x --threads 2 is more than the 2 usable cores" in capsys.readouterr().err


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],                       # truncated
    lambda text: "",                                           # empty
    lambda text: "\udcff",                                     # not UTF-8
    lambda text: "[1, 2]",                                     # JSON, not a results file
    lambda text: text.replace('"runs"', '"ruins"'),            # a key lost
])
@pytest.mark.parametrize("argv", [["--keep-earlier", "--no-report"], ["--report-only"]])
def test_an_unreadable_profile_file_is_a_clean_error_naming_it(damage, argv, tmp_path,
                                                               monkeypatch, capsys):
    _fake_runs(monkeypatch)
    path = accuracy.run_profile(_tiny_profile(), tmp_path, **ARGS)
    path.write_bytes(damage(path.read_text()).encode("utf-8", "surrogateescape"))
    monkeypatch.setattr(accuracy, "figures", lambda document, directory: [])
    executed = _fake_runs(monkeypatch)
    for cell in (tmp_path / accuracy.CELLS).glob("*.json"):
        cell.unlink()
    assert accuracy.main(["--profile", "smoke", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}" in err and "Traceback" not in err and executed == []


def test_an_unreadable_cell_is_a_clean_error_naming_it(tmp_path, monkeypatch, capsys):
    _fake_runs(monkeypatch)
    accuracy.run_profile(_tiny_profile(), tmp_path, **ARGS)
    cell = sorted((tmp_path / accuracy.CELLS).glob("*.json"))[0]
    cell.write_text(cell.read_text()[:100])
    assert accuracy.main(["--profile", "smoke", "--out", str(tmp_path), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert f"error: {cell}" in err and "Traceback" not in err


def test_report_only_without_results_is_a_clean_error(tmp_path, capsys):
    assert accuracy.main(["--report-only", "--out", str(tmp_path)]) == 2
    assert f"no accuracy results in {tmp_path}" in capsys.readouterr().err


def test_a_results_file_of_an_earlier_version_says_to_run_its_profile_again(tmp_path):
    path = tmp_path / "default.json"
    accuracy.write_json(path, {"schema": "rnnbench-accuracy/1", "profile": {}, "runs": []})
    with pytest.raises(accuracy.ResultsFileError, match=r"written by an earlier version .* "
                                                        r"run its profile again"):
        accuracy.read_results(path)


def test_tasks_narrow_a_profile_and_its_file_says_so():
    part = accuracy.narrowed(accuracy.PROFILES["default"], ["copy"])
    assert [t.task for t in part.tasks] == ["copy"]
    assert part.description.endswith("(this file: copy only)")
    assert {run.task.task for run in accuracy.plan(part)} == {"copy"}   # no cross runs
    assert {run.task.task for run in accuracy.search_plan(part)} == {"copy"}
    assert accuracy.narrowed(accuracy.PROFILES["default"], None) is accuracy.PROFILES["default"]


def test_an_unknown_task_is_named_with_the_profiles_tasks(capsys):
    with pytest.raises(SystemExit):
        accuracy.main(["--profile", "smoke", "--tasks", "parity", "--estimate"])
    assert "--tasks: profile 'smoke' has no task parity; its tasks: adding, copy" in (
        capsys.readouterr().err)
