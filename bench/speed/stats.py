"""Summaries of timing samples: median, IQR, and 95% intervals that include between-process spread.

Medians, not means: timing noise is one-sided (interrupts, other processes), and the median
ignores it where the mean chases it.

The samples of a case come from several worker processes (`bench.speed.timing`), and a
process shifts its times as a whole (memory layout, allocator state, clock frequency). An
interval from resampling the pooled samples would treat every call as independent and come
out too narrow. The intervals here are a two-stage (hierarchical) percentile bootstrap:
resample the processes with replacement, then the samples within each chosen process, and
take the statistic of the pooled resample; so they carry the between-process variance as
well as the within-process one. With one process it is the ordinary percentile bootstrap.

A ratio of medians pairs the processes: two implementations timed in the same process
(interleaved) share its state, so the same process indices are drawn for both sides, and
the samples within each are resampled independently. The generator is seeded, so the same
samples always give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
RESAMPLES = 2000
MIN_SAMPLES = 3


def processes_of(what: str, values) -> list[np.ndarray]:
    """Samples as a list of per-process arrays (a flat list is one process)."""
    if len(values) and not isinstance(values[0], (list, tuple, np.ndarray)):
        values = [values]
    groups = [np.asarray(g, dtype=float) for g in values]
    if not groups or any(g.ndim != 1 or g.size == 0 for g in groups):
        raise ValueError(f"{what} must be non-empty lists of numbers, one per process, got "
                         f"{values!r}")
    total = sum(g.size for g in groups)
    if total < MIN_SAMPLES:
        raise ValueError(f"{what} must hold at least {MIN_SAMPLES} numbers, got {total}")
    for g in groups:
        if not np.all(np.isfinite(g)):
            raise ValueError(f"{what} must be finite, got {values!r}")
    return groups


def _resample(groups: list[np.ndarray], picks: np.ndarray, rng) -> np.ndarray:
    return np.concatenate([groups[i][rng.integers(groups[i].size, size=groups[i].size)]
                           for i in picks])


def _bootstrap(sides: list[list[np.ndarray]], statistic: Callable, seed: int) -> list[float]:
    """Percentile interval of statistic(*pooled sides) under the two-stage resampling."""
    rng = np.random.default_rng(seed)
    paired = len({len(side) for side in sides}) == 1
    if paired and all(len({g.size for g in side}) == 1 for side in sides):
        values = _bootstrap_equal_sizes(sides, statistic, rng)
    else:
        values = np.empty(RESAMPLES)
        for r in range(RESAMPLES):
            picks = rng.integers(len(sides[0]), size=len(sides[0])) if paired else None
            pooled = [_resample(side, picks if paired else rng.integers(len(side),
                                                                        size=len(side)), rng)
                      for side in sides]
            values[r] = statistic(*pooled)
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return [float(low), float(high)]


def _bootstrap_equal_sizes(sides, statistic, rng) -> np.ndarray:
    """The same resampling, all at once, when every process of a side has as many samples."""
    k = len(sides[0])
    picks = rng.integers(k, size=(RESAMPLES, k, 1))
    pooled = []
    for side in sides:
        data = np.stack(side)  # (processes, samples)
        n = data.shape[1]
        within = rng.integers(n, size=(RESAMPLES, k, n))
        pooled.append(data[picks, within].reshape(RESAMPLES, k * n))
    return statistic(*pooled, axis=1)


def summarize(samples, *, seed: int = 0) -> dict:
    """Median, quartiles, IQR, min, n, processes and the 95% interval of the median."""
    groups = processes_of("samples", samples)
    pooled = np.concatenate(groups)
    q1, median, q3 = np.percentile(pooled, [25, 50, 75])
    return {"n": int(pooled.size), "processes": len(groups), "median": float(median),
            "q1": float(q1), "q3": float(q3), "iqr": float(q3 - q1), "min": float(pooled.min()),
            "ci95": _bootstrap([groups], _median, seed)}


def _median(a: np.ndarray, axis=None):
    return np.median(a, axis=axis)


def _median_ratio(a: np.ndarray, b: np.ndarray, axis=None):
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def ratio_of_medians(samples, baseline, *, seed: int = 0) -> dict:
    """median(samples) / median(baseline) with its 95% interval (processes paired)."""
    a = processes_of("samples", samples)
    b = processes_of("baseline samples", baseline)
    if np.median(np.concatenate(b)) <= 0:
        raise ValueError("baseline samples must have a positive median")
    return {"ratio": float(_median_ratio(np.concatenate(a), np.concatenate(b))),
            "ci95": _bootstrap([a, b], _median_ratio, seed)}


def pooled(samples: Sequence) -> list[float]:
    """Every sample of every process, in one list."""
    return [float(v) for g in processes_of("samples", samples) for v in g]
