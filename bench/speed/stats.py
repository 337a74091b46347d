"""Summaries of timing samples: median, IQR, and percentile-bootstrap 95% intervals.

Medians, not means: timing noise is one-sided (interrupts, other processes), and the median
ignores it where the mean chases it. The intervals come from `scipy.stats.bootstrap` with the
percentile method (BCa's jackknife is erratic for a median of few samples) and a seeded
generator, so the same samples always give the same interval. A ratio of medians
resamples both sets independently: they come from different implementations.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
MIN_SAMPLES = 3


def _as_samples(what: str, values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim != 1 or a.size < MIN_SAMPLES:
        raise ValueError(f"{what} must be a flat sequence of at least {MIN_SAMPLES} numbers, "
                         f"got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must be finite, got {values!r}")
    return a


def _median_ratio(a, b, axis=-1):
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def summarize(samples: Sequence[float], *, seed: int = 0) -> dict:
    """Median, quartiles, IQR, min, n and the bootstrap 95% interval of the median."""
    a = _as_samples("samples", samples)
    q1, median, q3 = np.percentile(a, [25, 50, 75])
    ci = stats.bootstrap((a,), np.median, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                         method="percentile", vectorized=True,
                         rng=np.random.default_rng(seed)).confidence_interval
    return {"n": int(a.size), "median": float(median), "q1": float(q1), "q3": float(q3),
            "iqr": float(q3 - q1), "min": float(a.min()),
            "ci95": [float(ci.low), float(ci.high)]}


def ratio_of_medians(samples: Sequence[float], baseline: Sequence[float], *,
                     seed: int = 0) -> dict:
    """median(samples) / median(baseline) with its bootstrap 95% interval."""
    a = _as_samples("samples", samples)
    b = _as_samples("baseline samples", baseline)
    if np.median(b) <= 0:
        raise ValueError(f"baseline samples must have a positive median, got {np.median(b)}")
    ci = stats.bootstrap((a, b), _median_ratio, n_resamples=RESAMPLES, paired=False,
                         confidence_level=CONFIDENCE, method="percentile", vectorized=True,
                         rng=np.random.default_rng(seed)).confidence_interval
    return {"ratio": float(_median_ratio(a, b)), "ci95": [float(ci.low), float(ci.high)]}
