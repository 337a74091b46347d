"""bench.speed.cases: cases, grids, profiles, filters, TOML grids and the stored plan."""

import dataclasses

import pytest

import impls
from bench import workload
from bench.speed import cases
from bench.speed.cases import Case, Grid, Plan, Timing


def keys(case_list):
    return [c.key for c in case_list]


def test_case_key_and_round_trip():
    case = Case("gru", "training", T=100, B=64, I=128, H=256, threads=2)
    assert case.key == "gru/training/T100/B64/I128/H256/float32/cpu/t2"
    assert case.group == "training/T100/B64/I128/H256/float32/cpu/t2"
    assert Case.from_dict(case.to_dict()) == case


def test_layer_fields_show_in_the_key_and_label_and_round_trip():
    case = Case("lstm", "training", T=100, B=32, I=256, H=256, threads=2, layers=2,
                bidirectional=True, lengths="uniform:0.5")
    assert case.key == "lstm/training/T100/B32/I256/H256/float32/cpu/t2/L2/bi/len-uniform:0.5"
    assert case.variant == "L2 bi len U[0.5T,T]"
    assert Case.from_dict(case.to_dict()) == case
    assert Case("gru", "inference", 10, 2, 3, 4, layers=3).variant == "L3"
    assert Case("gru", "inference", 10, 2, 3, 4, lengths="uniform:0.25").variant == (
        "len U[0.25T,T]")
    assert Case("gru", "inference", 10, 2, 3, 4).variant == ""


def test_a_case_stored_before_the_layer_fields_loads_as_one_full_length_layer():
    stored = {"cell": "gru", "mode": "training", "T": 100, "B": 64, "I": 128, "H": 256,
              "dtype": "float32", "device": "cpu", "threads": 2}
    case = Case.from_dict(stored)
    assert (case.layers, case.bidirectional, case.lengths) == (1, False, None)
    assert case.key == "gru/training/T100/B64/I128/H256/float32/cpu/t2"  # as it was stored


def test_tokens_count_the_real_tokens_only():
    assert Case("lstm", "inference", T=100, B=64, I=8, H=8).tokens == 6400
    varying = Case("lstm", "inference", T=100, B=64, I=8, H=8, lengths="uniform:0.5")
    lengths = workload.sequence_lengths("uniform:0.5", 100, 64)
    assert varying.tokens == sum(lengths)
    assert min(lengths) >= 50 and max(lengths) == 100 and 50 * 64 < varying.tokens < 6400
    # the draw is the case's own: the same every time
    assert Case("lstm", "training", T=100, B=64, I=8, H=8, lengths="uniform:0.5").tokens == (
        varying.tokens)


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
    (dict(layers=0), "case layers must be a positive int, got 0"),
    (dict(bidirectional=1), "case bidirectional must be true or false, got 1"),
    (dict(lengths="uniform:0"), "case lengths must be None .* or 'uniform:F' with 0 < F <= 1"),
    (dict(lengths="normal:0.5"), "case lengths must be None"),
    (dict(lengths=(1, 1)), "case lengths must be None"),
])
def test_bad_case_fields_are_named(kwargs, match):
    fields = dict(cell="lstm", mode="inference", T=1, B=1, I=1, H=1) | kwargs
    with pytest.raises(ValueError, match=match):
        Case(**fields)


def test_case_from_dict_wants_its_fields():
    with pytest.raises(ValueError, match="must have the fields .* and may have"):
        Case.from_dict({"cell": "lstm"})
    with pytest.raises(ValueError, match="must have the fields"):
        Case.from_dict(Case("lstm", "inference", 1, 1, 1, 1).to_dict() | {"depth": 2})


def test_grid_ties_input_to_hidden_size_unless_given():
    tied = Grid(T=(10,), B=(2,), H=(8, 16)).cases(["lstm"], ["inference"], ["float32"], ["cpu"],
                                                  [1], cores=2)
    assert [(c.I, c.H) for c in tied] == [(8, 8), (16, 16)]
    free = Grid(T=(10,), B=(2,), H=(8,), I=(3, 5)).cases(["lstm"], ["inference"],
                                                          ["float32"], ["cpu"], [1], cores=2)
    assert [(c.I, c.H) for c in free] == [(3, 8), (5, 8)]


def test_grid_crosses_the_layer_settings():
    grid = Grid(T=(10,), B=(2,), H=(8,), layers=(1, 2), bidirectional=(False, True),
                lengths=(None, "uniform:0.5"))
    found = grid.cases(["lstm"], ["inference"], ["float32"], ["cpu"], [1], cores=2)
    assert len(found) == 8 == len({c.key for c in found})
    assert {c.variant for c in found} >= {"", "L2 bi len U[0.5T,T]", "bi", "L2"}
    with pytest.raises(ValueError, match="grid lengths entry must be None"):
        Grid(T=(10,), B=(2,), H=(8,), lengths=("uniform:2",))
    with pytest.raises(ValueError, match="grid layers entry must be a positive int"):
        Grid(T=(10,), B=(2,), H=(8,), layers=(0,))
    with pytest.raises(ValueError, match="grid bidirectional must list at least one value"):
        Grid(T=(10,), B=(2,), H=(8,), bidirectional=())


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
        (1, "inference"), (1, "training")}
    # sweeps of H (forward) and of T (training) around the base point, at all cores
    assert {c.H for c in default if (c.T, c.B, c.mode, c.threads, c.variant)
            == (100, 64, "inference", 2, "")} == {64, 256, 512}
    assert {c.T for c in default if (c.B, c.H, c.mode) == (32, 128, "training")} == {100, 1000}
    # PyTorch's RNN benchmark shape (benchmarks/fastrnns), forward
    assert {c.cell for c in default if (c.T, c.B, c.I, c.H, c.mode, c.variant)
            == (100, 64, 512, 512, "inference", "")} == {"lstm", "gru"}
    # a 2-layer bidirectional layer and a variable-length batch, both modes
    for variant, shape in (("L2 bi", (50, 32, 256, 256)),
                           ("len U[0.5T,T]", (100, 64, 256, 256))):
        assert {(c.cell, c.mode) for c in default if c.variant == variant} == {
            (cell, mode) for cell in ("lstm", "gru") for mode in cases.MODES}
        assert {(c.T, c.B, c.I, c.H, c.threads) for c in default if c.variant == variant} == {
            (*shape, 2)}
    assert {c.variant for c in quick} == {"", "L2 bi len U[0.5T,T]"}


def test_cuda_cases_appear_where_a_gpu_is_visible():
    with_gpu = cases.PROFILES["quick"].cases(cuda_available=True, cores=2)
    assert {c.device for c in with_gpu} == {"cpu", "cuda"}
    assert len(with_gpu) == 2 * len(cases.PROFILES["quick"].cases(cuda_available=False,
                                                                   cores=2))


def test_numba_targets_profile_holds_the_target_cases():
    expected = {Case(cell, mode, T=100, B=B, I=256, H=256, threads=threads)
                for cell in ("lstm", "gru") for mode in ("inference", "training")
                for B in (1, 64) for threads in (1, 2)}
    expected |= {Case(cell, mode, T=100, B=1, I=512, H=512, threads=2)
                 for cell in ("lstm", "gru") for mode in ("inference", "training")}
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


def test_toml_grid_with_layer_settings(tmp_path):
    path = tmp_path / "stacked.toml"
    path.write_text('cells = ["lstm"]\nmodes = ["training"]\ndevices = ["cpu"]\n'
                    'threads = [1]\n[[grid]]\nT = [10]\nB = [4]\nH = [8]\nlayers = [2]\n'
                    'bidirectional = [true]\nlengths = ["uniform:0.5"]\n')
    assert keys(cases.load_profile(path).cases(False, cores=2)) == [
        "lstm/training/T10/B4/I8/H8/float32/cpu/t1/L2/bi/len-uniform:0.5"]


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
    ('[[grid]]\nT=[1]\nB=[1]\nH=[1]\nlengths=["uniform:-1"]\n', "grid lengths entry"),
    ('[[grid]]\nT=[1]\nB=[1]\nH=[1]\nbidirectional=["yes"]\n', "must be true or false"),
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
    some = cases.PROFILES["quick"].cases(False, cores=2)[:3]
    plan = Plan(profile="quick", cases=some, implementations=["torch", "scripted"],
                baseline="torch", timing=cases.QUICK_TIMING, fresh_process=False, seed=7,
                plugins=["my.impl"], narrowed={some[0].key: ["torch"]})
    assert Plan.from_dict(plan.to_dict()) == plan
    assert plan.implementations_of(some[0]) == ["torch"]
    assert plan.implementations_of(some[1]) == ["torch", "scripted"]


def test_a_plan_stored_before_narrowing_times_every_implementation_everywhere():
    some = cases.PROFILES["quick"].cases(False, cores=2)[:2]
    stored = Plan(profile="quick", cases=some, implementations=["torch", "numba"],
                  baseline="torch", timing=cases.QUICK_TIMING).to_dict()
    del stored["narrowed"]
    plan = Plan.from_dict(stored)
    assert [plan.implementations_of(c) for c in some] == [["torch", "numba"]] * 2


def test_a_grid_names_the_implementations_of_its_cases_and_overlaps_take_the_union():
    profile = cases.Profile(
        name="mixed", description="", timing=cases.QUICK_TIMING, cells=("gru",),
        modes=("inference",), devices=("cpu",), implementations=("torch", "numba"),
        grids=(Grid(T=(10,), B=(1, 4), H=(8,)),
               Grid(T=(10,), B=(4, 8), H=(8,), implementations=("jax", "torch"))))
    timed = profile.implementations_of(False, cores=2)
    by_batch = {case.B: timed[case.key] for case in profile.cases(False, cores=2)}
    assert by_batch == {1: ["numba", "torch"], 4: ["jax", "numba", "torch"],
                        8: ["jax", "torch"]}
    with pytest.raises(ValueError, match="grid implementations must name at least one"):
        Grid(T=(10,), B=(1,), H=(8,), implementations=())


def test_toml_grid_names_its_implementations(tmp_path):
    path = tmp_path / "peers.toml"
    path.write_text('cells = ["lstm"]\nmodes = ["inference"]\ndevices = ["cpu"]\n'
                    '[[grid]]\nT = [10]\nB = [1]\nH = [8]\n'
                    '[[grid]]\nT = [10]\nB = [4]\nH = [8]\nimplementations = ["torch", "jax"]\n')
    timed = cases.load_profile(path).implementations_of(False, cores=2)
    assert timed == {"lstm/inference/T10/B1/I8/H8/float32/cpu/t2": impls.names(),
                     "lstm/inference/T10/B4/I8/H8/float32/cpu/t2": ["jax", "torch"]}


def test_the_timed_profiles_name_their_implementations():
    """Registering a peer must not lengthen the quick and default runs; full takes all.
    The default profile times the peers where its leaders are named: T=100, I=H=256, B=1
    and 64, LSTM and GRU, both modes, on all cores."""
    for name in ("quick", "default", "numba-targets"):
        assert cases.PROFILES[name].implementations == cases.BUILT_IN
    assert set(cases.BUILT_IN + cases.PEERS) == set(impls.names())
    assert cases.PROFILES["full"].implementations is None
    default = cases.PROFILES["default"]
    assert set(cases.DEFAULT_PEERS) == set(cases.PEERS) - {"compiled-nn"}
    with_peers = {key for key, names in default.implementations_of(False, cores=2).items()
                  if set(cases.DEFAULT_PEERS) <= set(names)}
    assert with_peers == {f"{cell}/{mode}/T100/B{B}/I256/H256/float32/cpu/t2"
                          for cell in ("lstm", "gru") for mode in ("inference", "training")
                          for B in (1, 64)}
