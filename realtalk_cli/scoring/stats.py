"""Confidence intervals and paired tests over questions: percentile bootstrap and a sign-flip permutation test.

Every function takes a seed, so a report is the same number every time it is made from the same runs.
"""

from __future__ import annotations

import numpy as np

CHUNK = 2_000_000  # resample values drawn at once (memory bound, ~16 MB of indices)


def _resampled_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    n = len(values)
    means = np.empty(resamples)
    step = max(1, CHUNK // n)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def bootstrap_ci(values: list[float], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean with a percentile-bootstrap interval over the items; None fields when there is nothing to average."""
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if len(data) == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(data.mean())
    if len(data) == 1 or resamples <= 0:
        return {"mean": mean, "low": None, "high": None, "n": len(data)}
    means = _resampled_means(data, resamples, np.random.default_rng(seed))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": mean, "low": float(low), "high": float(high), "n": len(data)}


def stratified_ci(groups: list[list[float]], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """The unweighted mean of the groups' means (LongMemEval's task-averaged score), with a percentile-bootstrap
    interval that resamples within each group; groups without a value are left out, `n` counts the values."""
    data = [d for d in (np.asarray([v for v in g if v is not None], dtype=float) for g in groups) if len(d)]
    if not data:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(np.mean([d.mean() for d in data]))
    n = sum(len(d) for d in data)
    if resamples <= 0 or all(len(d) == 1 for d in data):
        return {"mean": mean, "low": None, "high": None, "n": n}
    rng = np.random.default_rng(seed)
    means = np.mean([_resampled_means(d, resamples, rng) for d in data], axis=0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": mean, "low": float(low), "high": float(high), "n": n}


def paired_difference(a: list[float], b: list[float], resamples: int = 1000, seed: int = 0) -> dict:
    """Mean of a - b over paired items, its bootstrap interval, and a two-sided sign-flip permutation p-value.

    Under the null hypothesis the two runs are exchangeable on each item, so each difference's sign is a
    coin flip; p = (1 + #{|mean of flipped| >= |observed|}) / (1 + resamples).
    """
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    out = bootstrap_ci(list(diffs), resamples, seed)
    out["p"] = None
    if len(diffs) == 0 or resamples <= 0:
        return out
    # Items the runs scored alike add nothing under any flip: only the others are drawn (same p, less work).
    moving = diffs[diffs != 0]
    if len(moving) == 0:
        out["p"] = 1.0
        return out
    observed = abs(moving.sum())
    rng = np.random.default_rng(seed + 1)
    n = len(moving)
    extreme = 0
    step = max(1, CHUNK // n)
    for start in range(0, resamples, step):
        rows = min(resamples, start + step) - start
        signs = rng.integers(0, 2, size=(rows, n), dtype=np.int8) * 2 - 1
        flipped = np.abs((signs * moving).sum(axis=1))
        extreme += int(np.count_nonzero(flipped >= observed - 1e-9))
    out["p"] = (1 + extreme) / (1 + resamples)
    return out
