"""bench.speed.stats against NumPy, independent hand-written bootstraps, and simulated runs
whose true medians are known."""

import numpy as np
import pytest

from bench.speed import stats


def numpy_percentile_bootstrap(samples, statistic, n=4000, seed=123):
    """The textbook percentile bootstrap, written out: resample each set with replacement."""
    rng = np.random.default_rng(seed)
    values = [statistic(*[rng.choice(s, size=len(s), replace=True) for s in samples])
              for _ in range(n)]
    return np.percentile(values, [2.5, 97.5])


def test_summary_matches_numpy():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 2.5]
    s = stats.summarize(samples)
    assert s["n"] == 7
    assert s["median"] == np.median(samples) == 3.0
    q1, q3 = np.percentile(samples, [25, 75])
    assert s["q1"] == q1 and s["q3"] == q3
    assert s["iqr"] == pytest.approx(q3 - q1)
    assert s["min"] == 1.0


def test_median_interval_contains_the_population_median():
    rng = np.random.default_rng(0)
    samples = rng.lognormal(mean=np.log(2e-3), sigma=0.2, size=200)  # population median 2 ms
    lo, hi = stats.summarize(samples)["ci95"]
    assert lo < 2e-3 < hi
    assert lo <= np.median(samples) <= hi


def test_median_interval_agrees_with_a_hand_written_bootstrap():
    rng = np.random.default_rng(1)
    samples = rng.gamma(shape=4.0, scale=1.0, size=60)
    lo, hi = stats.summarize(samples)["ci95"]
    ref_lo, ref_hi = numpy_percentile_bootstrap([samples], np.median)
    width = ref_hi - ref_lo
    assert lo == pytest.approx(ref_lo, abs=0.15 * width)
    assert hi == pytest.approx(ref_hi, abs=0.15 * width)


def test_constant_samples_give_a_point_interval():
    s = stats.summarize([0.25] * 8)
    assert s["ci95"] == [0.25, 0.25]
    assert s["iqr"] == 0.0


def test_the_seed_makes_the_interval_reproducible():
    samples = np.random.default_rng(2).normal(10, 1, size=30)
    first = stats.ratio_of_medians(samples, samples[::-1] + 1, seed=5)["ci95"]
    assert stats.ratio_of_medians(samples, samples[::-1] + 1, seed=5)["ci95"] == first


def test_ratio_of_medians_and_its_interval():
    rng = np.random.default_rng(3)
    slow = rng.lognormal(np.log(3.0), 0.1, size=150)   # population median 3
    fast = rng.lognormal(np.log(2.0), 0.1, size=150)   # population median 2
    r = stats.ratio_of_medians(slow, fast)
    assert r["ratio"] == pytest.approx(np.median(slow) / np.median(fast))
    lo, hi = r["ci95"]
    assert lo < 1.5 < hi
    ref_lo, ref_hi = numpy_percentile_bootstrap(
        [slow, fast], lambda a, b: np.median(a) / np.median(b))
    width = ref_hi - ref_lo
    assert lo == pytest.approx(ref_lo, abs=0.15 * width)
    assert hi == pytest.approx(ref_hi, abs=0.15 * width)


def test_ratio_against_itself_is_one():
    samples = [1.0, 1.2, 0.9, 1.1, 1.05]
    assert stats.ratio_of_medians(samples, samples)["ratio"] == 1.0


@pytest.mark.parametrize("bad, match", [
    ([1.0, 2.0], "at least 3"),
    ([[[1.0, 2.0, 3.0]]], "lists of numbers"),
    ([[1.0, 2.0, 3.0], []], "non-empty"),
    ([1.0, float("nan"), 2.0], "finite"),
])
def test_bad_samples_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        stats.summarize(bad)


def test_zero_baseline_is_refused():
    with pytest.raises(ValueError, match="positive median"):
        stats.ratio_of_medians([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])


def two_stage_bootstrap(processes, n=3000, seed=7):
    """The two-stage percentile bootstrap, written out with Python's own choices."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        chosen = [processes[i] for i in rng.integers(len(processes), size=len(processes))]
        values.append(np.median(np.concatenate(
            [rng.choice(p, size=len(p), replace=True) for p in chosen])))
    return np.percentile(values, [2.5, 97.5])


def simulated_run(rng, processes=5, calls=20, spread=0.08, noise=0.01, median=1.0):
    """Samples whose processes each shift all their times by a common random factor."""
    return [list(median * np.exp(rng.normal(0, spread)) * np.exp(rng.normal(0, noise, calls)))
            for _ in range(processes)]


def test_samples_are_kept_per_process_and_counted():
    s = stats.summarize([[1.0, 2.0], [3.0, 4.0, 5.0]])
    assert s["n"] == 5 and s["processes"] == 2 and s["median"] == 3.0


def test_two_stage_interval_agrees_with_a_hand_written_one():
    processes = simulated_run(np.random.default_rng(11))
    lo, hi = stats.summarize(processes)["ci95"]
    ref_lo, ref_hi = two_stage_bootstrap([np.asarray(p) for p in processes])
    width = ref_hi - ref_lo
    assert lo == pytest.approx(ref_lo, abs=0.2 * width)
    assert hi == pytest.approx(ref_hi, abs=0.2 * width)


def test_between_process_spread_is_inside_the_interval():
    """Runs whose processes shift as a whole: the two-stage interval covers the true median
    (1.0) about as often as it claims; pooling the calls as if independent does not."""
    rng = np.random.default_rng(12)
    covered = pooled_covered = 0
    runs = 30
    for _ in range(runs):
        processes = simulated_run(rng)
        lo, hi = stats.summarize(processes)["ci95"]
        covered += lo <= 1.0 <= hi
        p_lo, p_hi = stats.summarize(stats.pooled(processes))["ci95"]
        pooled_covered += p_lo <= 1.0 <= p_hi
    assert covered >= 0.7 * runs
    assert pooled_covered <= 0.5 * runs


def test_ratio_pairs_the_processes():
    """Two implementations timed in the same processes share each process's shift: paired,
    the ratio's interval is narrow and holds the true ratio 1.5."""
    rng = np.random.default_rng(13)
    shifts = np.exp(rng.normal(0, 0.1, 5))
    fast = [list(s * np.exp(rng.normal(0, 0.01, 20))) for s in shifts]
    slow = [list(1.5 * s * np.exp(rng.normal(0, 0.01, 20))) for s in shifts]
    r = stats.ratio_of_medians(slow, fast)
    lo, hi = r["ci95"]
    assert lo <= 1.5 <= hi
    assert hi - lo < 0.1
