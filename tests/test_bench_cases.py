"""bench.speed.cases: cases, grids, profiles, filters, TOML grids and the stored plan."""

import dataclasses

import pytest

from bench.speed import cases
from bench.speed.cases import Case, Grid, Plan, Timing


def keys(case_list):
    return [c.key for c in case_list]


def test_case_key_and_round_trip():
    case = Case("gru", "training", T=100, B=64, I=128, H=256, threads=2)
    assert case.key == "gru/training/T100/B64/I128/H256/float32/cpu/t2"
    assert case.group == "training/T100/B64/I128/H256/float32/cpu/t2"
    assert Case.from_dict(case.to_dict()) == case


def test_cases_that_differ_only_in_the_cell_form_a_group():
    found = cases.PROFILES["quick"].cases(cuda_available=False, cores=2)
    grouped = cases.groups(found)
    assert sum(len(g) for g in grouped) == len(found)
    for group in grouped:
        assert len({c.group for c in group}) == 1
        assert {"gru", "lstm"} <= {c.cell for c in group}


@pytest.mark.parametrize("kwargs, match", [
    (dict(cell="transformer"), "case cell must be one of"),
    (dict(mode="eval"), "case mode must be one of"),
    (dict(T=0), "case T must be a positive int, got 0"),
    (dict(B=True), "case B must be a positive int, got True"),
    (dict(H=2.0), "case H must be a positive int"),
    (dict(dtype="int8"), "case dtype must be one of"),
    (dict(device="tpu"), "case device must be one of"),
    (dict(threads=0), "case threads must be a positive int"),
])
def test_bad_case_fields_are_named(kwargs, match):
    fields = dict(cell="lstm", mode="inference", T=1, B=1, I=1, H=1) | kwargs
    with pytest.raises(ValueError, match=match):
        Case(**fields)


def test_case_from_dict_wants_exactly_its_fields():
    with pytest.raises(ValueError, match="exactly the fields"):
        Case.from_dict({"cell": "lstm"})


def test_grid_ties_input_to_hidden_size_unless_given():
    tied = Grid(T=(10,), B=(2,), H=(8, 16)).cases(["lstm"], ["inference"], ["float32"], ["cpu"],
                                                  [1], cores=2)
    assert [(c.I, c.H) for c in tied] == [(8, 8), (16, 16)]
    free = Grid(T=(10,), B=(2,), H=(8,), I=(3, 5)).cases(["lstm"], ["inference"],
                                                          ["float32"], ["cpu"], [1], cores=2)
    assert [(c.I, c.H) for c in free] == [(3, 8), (5, 8)]


def test_grid_may_narrow_modes():
    grid = Grid(T=(10,), B=(2,), H=(8,), modes=("training",))
    assert {c.mode for c in grid.cases(["lstm"], cases.MODES, ["float32"], ["cpu"], [1],
                                       cores=2)} == {"training"}


def test_core_budgets_resolve_all_to_the_usable_cores():
    grid = Grid(T=(10,), B=(2,), H=(8,))
    found = grid.cases(["lstm"], ["inference"], ["float32"], ["cpu"], ["all", 1], cores=4)
    assert sorted(c.threads for c in found) == [1, 4]
    one = Grid(T=(10,), B=(2,), H=(8,), threads=(1,))
    assert [c.threads for c in one.cases(["lstm"], ["inference"], ["float32"], ["cpu"],
                                         ["all"], cores=4)] == [1]
    with pytest.raises(ValueError, match="positive int or 'all'"):
        Grid(T=(10,), B=(2,), H=(8,), threads=("some",))


def test_profiles_hold_unique_valid_cases_and_sweeps():
    for profile in cases.PROFILES.values():
        found = profile.cases(cuda_available=False, cores=2)
        assert found and len(set(keys(found))) == len(found)
        assert {c.device for c in found} == {"cpu"}
    quick = cases.PROFILES["quick"].cases(cuda_available=False, cores=2)
    # every figure has a sweep of at least two points at one context
    assert {c.H for c in quick if (c.T, c.B) == (50, 16) and c.I == c.H} == {128, 256}
    assert {c.B for c in quick if (c.T, c.H) == (50, 128)} == {1, 16}
    assert {c.T for c in quick if c.mode == "training" and (c.B, c.H) == (16, 128)
            and c.threads == 2} == {50, 100}
    assert {c.cell for c in quick} == {"lstm", "gru", "rnn_tanh"}
    # a single-core table beside the all-cores one
    assert {c.threads for c in quick} == {1, 2}
    default = cases.PROFILES["default"].cases(cuda_available=False, cores=2)
    assert {(c.B, c.mode) for c in default if c.threads == 1} == {
        (1, "inference"), (1, "training"), (64, "inference")}


def test_cuda_cases_appear_where_a_gpu_is_visible():
    with_gpu = cases.PROFILES["quick"].cases(cuda_available=True, cores=2)
    assert {c.device for c in with_gpu} == {"cpu", "cuda"}
    assert len(with_gpu) == 2 * len(cases.PROFILES["quick"].cases(cuda_available=False,
                                                                   cores=2))


def test_numba_targets_profile_holds_the_target_cases():
    expected = {Case(cell, mode, T=100, B=B, I=256, H=256, threads=threads)
                for cell in ("lstm", "gru") for mode in ("inference", "training")
                for B in (1, 64) for threads in (1, 2)}
    expected |= {Case(cell, "training", T=1000, B=32, I=128, H=128, threads=2)
                 for cell in ("lstm", "gru")}
    assert set(cases.PROFILES["numba-targets"].cases(cuda_available=True, cores=2)) == expected


def test_select_filters_and_refuses_an_empty_result():
    quick = cases.PROFILES["quick"].cases(cuda_available=False, cores=2)
    gru = cases.select(quick, cells=["gru"], modes=["training"])
    assert gru and all(c.cell == "gru" and c.mode == "training" for c in gru)
    with pytest.raises(ValueError, match="no case matches"):
        cases.select(quick, dtypes=["float64"])
    with pytest.raises(ValueError, match="--cell must be one of"):
        cases.select(quick, cells=["lstmm"])


def test_grid_profile_from_flags():
    profile = cases.grid_profile(T=[100], B=[1, 64], H=[256], cells=["lstm"],
                                 modes=["training"])
    assert keys(profile.cases(False, cores=2)) == [
        "lstm/training/T100/B1/I256/H256/float32/cpu/t2",
        "lstm/training/T100/B64/I256/H256/float32/cpu/t2"]


def test_toml_profile(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('description = "two batches"\ncells = ["gru"]\nmodes = ["inference"]\n'
                    'devices = ["cpu"]\nthreads = [1]\n[[grid]]\nT = [10]\nB = [1, 4]\nH = [8]\n'
                    'I = [3]\n'
                    '[timing]\ntarget_s = 0.25\nmin_repeats = 4\n')
    profile = cases.load_profile(path)
    assert profile.name == "mine"
    assert keys(profile.cases(True, cores=2)) == ["gru/inference/T10/B1/I3/H8/float32/cpu/t1",
                                                  "gru/inference/T10/B4/I3/H8/float32/cpu/t1"]
    assert profile.timing == dataclasses.replace(cases.DEFAULT_TIMING, target_s=0.25,
                                                 min_repeats=4)


@pytest.mark.parametrize("text, match", [
    ('cell = ["gru"]\n[[grid]]\nT=[1]\nB=[1]\nH=[1]\n', "unknown keys \\['cell'\\]"),
    ('cells = ["gru"]\n', "at least one \\[\\[grid\\]\\]"),
    ('[[grid]]\nT=[1]\nB=[1]\n', "missing \\['H'\\]"),
    ('[[grid]]\nT=1\nB=[1]\nH=[1]\n', "grid 1 T must be a list"),
    ('[[grid]]\nT=[0]\nB=[1]\nH=[1]\n', "grid T entry must be a positive int"),
    ('[[grid]]\nT=[1]\nB=[1]\nH=[1]\n[timing]\nrepeats = 3\n', "unknown timing settings"),
    ('[[grid]]\nT=[1]\nB=[1]\nH=[1]\n[timing]\nbudget_s = nan\n', "budget_s must be a positive"),
    ('[[grid]]\nT=[1]\nB=[1]\nH=[1]\n[timing]\nbudget_s = inf\n', "finite"),
    ('[[grid]]\nT=[1\n', "not valid TOML"),
])
def test_bad_toml_is_explained(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as raised:
        cases.load_profile(path)
    assert "bad.toml" in str(raised.value)


@pytest.mark.parametrize("kwargs, match", [
    (dict(min_repeats=2, max_repeats=5), "at least 3"),
    (dict(min_repeats=5, max_repeats=4), "must be >= min_repeats"),
    (dict(budget_s=0), "budget_s must be a positive finite number"),
    (dict(workers=0), "workers must be a positive int"),
])
def test_bad_timing_is_refused(kwargs, match):
    fields = cases.QUICK_TIMING.to_dict() | kwargs
    with pytest.raises(ValueError, match=match):
        Timing(**fields)


def test_plan_round_trips():
    plan = Plan(profile="quick", cases=cases.PROFILES["quick"].cases(False, cores=2)[:3],
                implementations=["torch", "scripted"], baseline="torch",
                timing=cases.QUICK_TIMING, fresh_process=False, seed=7,
                plugins=["my.impl"])
    assert Plan.from_dict(plan.to_dict()) == plan
