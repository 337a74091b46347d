"""The 95% intervals on every figure the claims compare across seeds.

Losses get a percentile bootstrap of the median: it needs no normal approximation (with 5-10
seeds and losses spread over orders of magnitude a t-interval is wrong, and its lower bound
went negative for MSE), and it never leaves the range of the data. Comparisons of two
models get a bootstrap of the ratio of their medians, each side resampled on its own (the
seeds of two models are independent runs). Success rates get the Wilson score interval,
which stays inside [0, 1] and is not empty at 0 or n successes (Brown, Cai & DasGupta 2001
recommend it over the exact and the normal intervals for small n).

Every resampling is seeded, so a report regenerated from the same numbers is identical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 4000
#: z for a two-sided 95% interval.
Z95 = 1.959963984540054


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{what}: expected a flat sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: every value must be finite (count diverged runs apart), "
                         f"got {array.tolist()}")
    return array


def _medians(array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picks = rng.integers(0, array.size, size=(RESAMPLES, array.size))
    return np.median(array[picks], axis=1)


def median_interval(values: Sequence[float], *, seed: int = 0) -> dict:
    """Median of `values` and its percentile-bootstrap 95% interval (None for n < 2)."""
    array = _finite(values, "median_interval")
    if array.size == 0:
        return {"n": 0, "median": None, "ci95": None}
    median = float(np.median(array))
    if array.size < 2:
        return {"n": 1, "median": median, "ci95": None}
    medians = _medians(array, np.random.default_rng(seed))
    low, high = np.quantile(medians, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {"n": int(array.size), "median": median, "ci95": [float(low), float(high)]}


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float], *,
                   seed: int = 0) -> dict:
    """median(numerator) / median(denominator) and its 95% bootstrap interval, the two
    groups resampled independently (None for a group of fewer than 2)."""
    a = _finite(numerator, "ratio_interval")
    b = _finite(denominator, "ratio_interval")
    if a.size == 0 or b.size == 0:
        return {"n": [int(a.size), int(b.size)], "ratio": None, "ci95": None}
    if np.median(b) <= 0 or (b <= 0).any():
        raise ValueError(f"ratio_interval: the denominator's values must be positive, got "
                         f"{b.tolist()}")
    ratio = float(np.median(a) / np.median(b))
    if a.size < 2 or b.size < 2:
        return {"n": [int(a.size), int(b.size)], "ratio": ratio, "ci95": None}
    rng = np.random.default_rng(seed)
    ratios = _medians(a, rng) / _medians(b, rng)
    low, high = np.quantile(ratios, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {"n": [int(a.size), int(b.size)], "ratio": ratio, "ci95": [float(low), float(high)]}


def difference_interval(a: Sequence[float], b: Sequence[float], *, seed: int = 0) -> dict:
    """median(a) - median(b) and its 95% bootstrap interval, each group resampled on its
    own (None for a group of fewer than 2): for figures that can be 0, such as accuracies,
    where a ratio is undefined."""
    a, b = _finite(a, "difference_interval"), _finite(b, "difference_interval")
    if a.size == 0 or b.size == 0:
        return {"difference": None, "ci95": None}
    difference = float(np.median(a) - np.median(b))
    if a.size < 2 or b.size < 2:
        return {"difference": difference, "ci95": None}
    rng = np.random.default_rng(seed)
    low, high = np.quantile(_medians(a, rng) - _medians(b, rng),
                            [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {"difference": difference, "ci95": [float(low), float(high)]}


def wilson_interval(successes: int, n: int) -> dict:
    """Success rate k/n with its Wilson score 95% interval."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"wilson_interval: 'n' must be a positive int, got {n!r}")
    if isinstance(successes, bool) or not isinstance(successes, int) or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval: 'successes' must be an int in [0, {n}], "
                         f"got {successes!r}")
    p, z2 = successes / n, Z95 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return {"k": successes, "n": n, "rate": p,
            "ci95": [max(0.0, centre - half), min(1.0, centre + half)]}


def rates_differ(a: dict, b: dict) -> bool:
    """Two Wilson intervals that do not overlap: the rates differ beyond the seeds' noise."""
    return a["ci95"][1] < b["ci95"][0] or b["ci95"][1] < a["ci95"][0]


def fmt(interval: dict, key: str) -> str:
    """'0.0123 [0.0101, 0.0150]' (4 significant digits); the value alone without an interval."""
    value = interval[key]
    if value is None:
        return "n/a"
    if interval["ci95"] is None:
        return f"{value:.3g}"
    low, high = interval["ci95"]
    return f"{value:.3g} [{low:.3g}, {high:.3g}]"


def fmt_rate(interval: dict) -> str:
    """'3/5 [23%, 88%]'."""
    low, high = interval["ci95"]
    return f"{interval['k']}/{interval['n']} [{low:.0%}, {high:.0%}]"
