"""The claims' intervals against independent computations: scipy's bootstrap and the
Wilson interval's published values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from bench.claims.intervals import (
    difference_interval,
    median_interval,
    rates_differ,
    ratio_interval,
    wilson_interval,
)


def test_median_interval_matches_scipys_percentile_bootstrap():
    values = np.random.default_rng(3).lognormal(-4, 1.5, size=10)
    ours = median_interval(values.tolist())
    theirs = stats.bootstrap((values,), np.median, confidence_level=0.95, method="percentile",
                             n_resamples=20000, random_state=1).confidence_interval
    assert ours["median"] == pytest.approx(float(np.median(values)))
    # The bootstrap distribution of a median of 10 takes few values: the bounds agree
    # to within the gap between neighbouring order statistics.
    assert ours["ci95"][0] == pytest.approx(theirs.low, rel=0.35)
    assert ours["ci95"][1] == pytest.approx(theirs.high, rel=0.35)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1e-9, 1e3), min_size=2, max_size=12))
def test_a_median_interval_never_leaves_the_data(values):
    interval = median_interval(values)
    low, high = interval["ci95"]
    assert min(values) <= low <= interval["median"] <= high <= max(values)


def test_median_interval_of_too_few_values():
    assert median_interval([]) == {"n": 0, "median": None, "ci95": None}
    assert median_interval([0.3]) == {"n": 1, "median": 0.3, "ci95": None}


def test_a_diverged_run_must_be_counted_apart():
    with pytest.raises(ValueError, match="every value must be finite"):
        median_interval([0.1, float("nan")])


def test_ratio_interval_covers_the_ratio_and_separates_distinct_groups():
    rng = np.random.default_rng(0)
    small, large = rng.uniform(0.9, 1.1, 8), rng.uniform(9, 11, 8)
    far = ratio_interval(small.tolist(), large.tolist())
    assert far["ratio"] == pytest.approx(np.median(small) / np.median(large))
    assert far["ci95"][0] <= far["ratio"] <= far["ci95"][1] < 1
    same = ratio_interval(small.tolist(), rng.uniform(0.9, 1.1, 8).tolist())
    assert same["ci95"][0] < 1 < same["ci95"][1]


def test_ratio_interval_needs_a_positive_denominator():
    with pytest.raises(ValueError, match="must be positive"):
        ratio_interval([1.0, 2.0], [0.0, 1.0])


@pytest.mark.parametrize("k, n, low, high", [
    # Brown, Cai & DasGupta 2001 and Newcombe 1998 (table I) give these Wilson intervals.
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (81, 263, 0.2553, 0.3662),
])
def test_wilson_interval_published_values(k, n, low, high):
    interval = wilson_interval(k, n)
    assert interval["rate"] == k / n
    assert interval["ci95"] == pytest.approx([low, high], abs=5e-4)


def test_wilson_bad_counts_are_named():
    with pytest.raises(ValueError, match=r"'successes' must be an int in \[0, 5\], got 6"):
        wilson_interval(6, 5)
    with pytest.raises(ValueError, match="'n' must be a positive int, got 0"):
        wilson_interval(0, 0)


def test_rates_differ_only_when_the_intervals_do_not_overlap():
    assert rates_differ(wilson_interval(0, 10), wilson_interval(10, 10))
    assert not rates_differ(wilson_interval(3, 5), wilson_interval(5, 5))


def test_difference_interval_of_medians():
    d = difference_interval([0.9, 0.91, 0.92], [0.5, 0.52, 0.5])
    assert d["difference"] == pytest.approx(0.41)
    assert d["ci95"] == pytest.approx([0.38, 0.42])     # the extremes of 3 vs 3 values
    assert difference_interval([0.9], [0.5])["ci95"] is None
