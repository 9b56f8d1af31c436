"""Confidence intervals and paired tests over questions: percentile bootstrap and a sign-flip permutation test.

Every function takes a seed, so a report is the same number every time it is made from the same runs.

A leaderboard asks for hundreds of intervals at once (runs x scores x categories, and every pair of runs), so
`bootstrap_many` and `paired_many` compute them together: the resample indices depend only on the seed and the
sample's size, so samples of one size share one draw; identical samples are computed once; the work is spread
over a few threads (numpy releases the GIL). Each result is exactly, bit for bit, what `bootstrap_ci` and
`paired_difference` give for that sample alone, which tests/test_report_scale.py checks against the plain
algorithm.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

CHUNK = 2_000_000  # resample values drawn at once (memory bound, ~16 MB of indices)
_THREADS_FROM = 4_000_000  # values to draw before the work is worth spreading over threads
_TOLERANCE = 1e-9  # a flipped sum this close to the observed one counts as extreme (rounding, not evidence)


def _threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))  # each thread holds ~32 MB of temporaries


def _run(tasks: list[Callable[[], None]], work: float) -> None:
    """Run the tasks, on a few threads when there is enough work to gain from it."""
    if work < _THREADS_FROM or len(tasks) < 2 or _threads() == 1:
        for task in tasks:
            task()
        return
    with ThreadPoolExecutor(min(_threads(), len(tasks))) as pool:
        for future in [pool.submit(task) for task in tasks]:
            future.result()


def _clean(values: Sequence[float | None] | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray):
        data = values.astype(float, copy=False)
        return data[~np.isnan(data)] if data.size and np.isnan(data).any() else data
    return np.asarray([v for v in values if v is not None], dtype=float)


def _small_integers(values: np.ndarray) -> bool:
    """Whether the values are all small whole numbers (a judge's 0/1, their differences): their sums are then exact
    in any order, so counting in integers gives the float mean to the last bit, faster (`_Pack`)."""
    if values.size == 0 or values.min() < -100 or values.max() > 100:
        return False
    # -0.0 sums to -0.0 alone: a float sum to keep
    return bool(np.array_equal(values, np.round(values)) and not np.signbit(values[values == 0]).any())


def _digest(values: np.ndarray) -> bytes:
    return hashlib.blake2b(values.tobytes(), digest_size=16).digest() + len(values).to_bytes(8, "little")


def _distinct(samples: list[np.ndarray]) -> tuple[list[int], list[int]]:
    """Indexes of the first of each distinct sample, and for every sample the index of its first twin."""
    first: dict[bytes, int] = {}
    firsts, twin = [], []
    for i, s in enumerate(samples):
        j = first.setdefault(_digest(s), i)
        if j != i and not np.array_equal(samples[j], s):  # a digest collision: compute it on its own
            j = i
        if j == i:
            firsts.append(i)
        twin.append(j)
    return firsts, twin


def _means_into(out: np.ndarray, values: np.ndarray, idx: np.ndarray) -> None:
    """out[r] = the mean of values[idx[r]], for each row r of resample indices (a row at a time: the gathered
    values then stay in the cache)."""
    for r in range(len(idx)):
        out[r] = values.take(idx[r]).sum() / idx.shape[1]  # as .mean(): the pairwise sum, divided by n


class _Pack:
    """Up to eight samples of small whole numbers side by side, each as a byte of one uint64 per item (its value
    less its minimum): one gather draws all eight, and their sums, added up in blocks that cannot carry from one
    byte into the next, are exact; so is each mean, sum / n, as the float mean of the same values."""

    def __init__(self, samples: list[np.ndarray]) -> None:
        self.low = [int(s.min()) for s in samples]
        width = max(int(s.max()) - low for s, low in zip(samples, self.low, strict=True))
        self.block = 255 // max(1, width)
        self.words = np.zeros(len(samples[0]), dtype=np.uint64)
        for byte, (s, low) in enumerate(zip(samples, self.low, strict=True)):
            self.words |= (s.astype(np.int64) - low).astype(np.uint64) << np.uint64(8 * byte)

    def means_into(self, outs: list[np.ndarray], idx: np.ndarray) -> None:
        n = idx.shape[1]
        gathered = np.zeros(-(-n // self.block) * self.block, dtype=np.uint64)  # the padding adds 0 to every byte
        for r in range(len(idx)):
            np.take(self.words, idx[r], out=gathered[:n])
            blocks = gathered.reshape(-1, self.block).sum(axis=1, dtype=np.uint64)
            sums = blocks.astype("<u8", copy=False).view(np.uint8).reshape(-1, 8).sum(axis=0, dtype=np.int64)
            for byte, (out, low) in enumerate(zip(outs, self.low, strict=True)):
                out[r] = (int(sums[byte]) + low * n) / n


def draw_indices(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """A (rows x n) array of resample indices from 0 to n-1. Drawn as 32-bit integers (three times faster than
    numpy's default 64-bit draw, which was most of a large report's time), then widened for gathering."""
    return rng.integers(0, n, size=(rows, n), dtype=np.uint32).astype(np.intp)


def _resampled_means(samples: list[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    """The bootstrap means of samples of one size n, drawing the (resamples x n) indices once for all of them."""
    n = len(samples[0])
    rng = np.random.default_rng(seed)
    means = [np.empty(resamples) for _ in samples]
    whole = [_small_integers(s) for s in samples]
    small = [(s, m) for s, m, w in zip(samples, means, whole, strict=True) if w]
    packs = [
        (_Pack([s for s, _ in small[k : k + 8]]), [m for _, m in small[k : k + 8]]) for k in range(0, len(small), 8)
    ]
    floats = [(s, m) for s, m, w in zip(samples, means, whole, strict=True) if not w]
    step = max(1, CHUNK // n)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = draw_indices(rng, n, stop - start)
        jobs = len(floats) + len(packs)
        block = max(1, math.ceil((stop - start) / max(1, _threads() // jobs)))  # a task per thread at least
        tasks = []
        for lo in range(0, stop - start, block):
            rows, hi = idx[lo : lo + block], min(stop, start + lo + block)
            tasks += [functools.partial(_means_into, out[start + lo : hi], s, rows) for s, out in floats]
            tasks += [functools.partial(p.means_into, [o[start + lo : hi] for o in outs], rows) for p, outs in packs]
        _run(tasks, float(idx.size) * jobs)
    return means


def bootstrap_many(
    samples: Sequence[Sequence[float | None] | np.ndarray], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> list[dict]:
    """`bootstrap_ci` of each sample (None or NaN values left out), computed together."""
    data = [_clean(s) for s in samples]
    results: list[dict] = []
    for d in data:
        if len(d) == 0:
            results.append({"mean": None, "low": None, "high": None, "n": 0})
        else:
            results.append({"mean": float(d.mean()), "low": None, "high": None, "n": len(d)})
    todo = [i for i, d in enumerate(data) if len(d) > 1 and resamples > 0]
    firsts, twin = _distinct([data[i] for i in todo])
    by_size: dict[int, list[int]] = {}
    for k in firsts:
        by_size.setdefault(len(data[todo[k]]), []).append(todo[k])
    bounds: dict[int, tuple[float, float]] = {}
    tail = (1 - level) / 2 * 100
    for members in by_size.values():
        for i, means in zip(members, _resampled_means([data[i] for i in members], resamples, seed), strict=True):
            low, high = np.percentile(means, [tail, 100 - tail])
            bounds[i] = (float(low), float(high))
    for k, i in enumerate(todo):
        results[i]["low"], results[i]["high"] = bounds[todo[twin[k]]]
    return results


def bootstrap_ci(values: Sequence[float | None], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Mean with a percentile-bootstrap interval over the items; None fields when there is nothing to average."""
    return bootstrap_many([values], resamples, seed, level)[0]


def _plain_resampled_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """The bootstrap means of one sample, drawing from a generator the caller shares between samples."""
    n = len(values)
    means = np.empty(resamples)
    step = max(1, CHUNK // n)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        means[start:stop] = values[draw_indices(rng, n, stop - start)].mean(axis=1)
    return means


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
    means = np.mean([_plain_resampled_means(d, resamples, rng) for d in data], axis=0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return {"mean": mean, "low": float(low), "high": float(high), "n": n}


class _Coins:
    """The bytes `Generator.bytes` gives, call after call, drawn 64 bits at a time straight from the bit generator:
    bytes() draws 32-bit words, which the generator serves as the halves of its 64-bit outputs, low half first,
    keeping an unused high half for the next call."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.bits = rng.bit_generator
        self.spare = np.empty(0, dtype=np.uint8)  # the high half of the last 64-bit output, when not yet used

    def take(self, count: int) -> np.ndarray:
        words = (count - 1) // 4 + 1  # bytes() uses whole words, and drops what is left of the last one
        outputs = -(-(words * 4 - len(self.spare)) // 8)
        drawn = self.bits.random_raw(outputs).astype("<u8", copy=False).view(np.uint8)
        stream = np.concatenate([self.spare, drawn]) if len(self.spare) else drawn
        self.spare = stream[words * 4 :]
        return stream[:count]


@functools.cache
def _signs_from_bytes() -> bool:
    """Whether numpy draws a fair int8 coin as the top bit of each byte of a 32-bit word, word after word (so that
    the sign flips can be drawn at a byte each, 64 bits at a time, instead of a bounded draw each: the same signs,
    several times faster). Checked once against `integers` itself; when numpy draws otherwise, the signs come from
    `integers`."""
    shapes = [(3, 5), (2, 7), (1, 9), (4, 1), (2, 8), (1, 3), (5, 5)]  # counts leaving 0-3 bytes of a word unused
    a, b = np.random.default_rng(12345), _Coins(np.random.default_rng(12345))
    for rows, n in shapes:
        drawn = a.integers(0, 2, size=(rows, n), dtype=np.int8)
        if not np.array_equal(drawn, b.take(rows * n).reshape(rows, n) >> 7):
            return False
    return True


def _as_small_integers(moving: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(moving * 2**k as float32, 2**k) when the values are multiples of 2**-k (k <= 8: a judge's 0/1 or halves,
    their differences) whose sizes add up to less than 2**24: then every partial sum of signed values is exact,
    in float32 and in any order, so that a matrix product or a count gives the flipped sums to the last bit."""
    for k in range(9):
        scaled = moving * 2.0**k
        if np.array_equal(scaled, np.round(scaled)):
            return (scaled.astype(np.float32), 2.0**k) if np.abs(scaled).sum() < 2**24 else None
    return None


def _flipped_sums(plus: np.ndarray, moving: np.ndarray, small: tuple[np.ndarray, float] | None) -> np.ndarray:
    """|sum of sign * moving| per row, sign = +1 where `plus` is 1 and -1 where it is 0, as the float sum of
    `(2 * plus - 1) * moving` along the row gives it."""
    if small is None:  # plus * 2m - m: 2m - m = m and 0 - m = -m exactly, summed in the same order
        twice, signed = 2 * moving, np.empty(len(moving))
        sums = np.empty(len(plus))
        for r in range(len(plus)):  # a row at a time, in the cache
            np.multiply(plus[r], twice, out=signed, dtype=float)
            signed -= moving
            sums[r] = signed.sum()
        return np.abs(sums)
    scaled, scale = small
    total = scaled.sum(dtype=float)
    magnitude = abs(float(scaled[0]))
    if np.all(np.abs(scaled) == magnitude):  # +-c: sum of plus * sign(m), a count once the negative ones flip
        negative = scaled < 0
        hits = np.count_nonzero(plus != negative, axis=1)  # plus where m > 0, not plus where m < 0
        return np.abs(2.0 * (hits - int(negative.sum())) * magnitude - total) / scale
    return np.abs(2.0 * (plus.astype(np.float32) @ scaled).astype(float) - total) / scale


def _permutation_p(moving: np.ndarray, resamples: int, seed: int) -> float:
    """Two-sided sign-flip p-value of the differences that are not zero."""
    observed = abs(moving.sum())
    rng = np.random.default_rng(seed + 1)
    n = len(moving)
    coins = _Coins(rng) if _signs_from_bytes() else None
    small = _as_small_integers(moving) if coins is not None else None
    extreme = 0
    step = max(1, CHUNK // n)
    for start in range(0, resamples, step):
        rows = min(resamples, start + step) - start
        if coins is not None:  # sign = 2 * (byte >> 7) - 1
            flipped = _flipped_sums(coins.take(rows * n).reshape(rows, n) >> 7, moving, small)
        else:
            signs = rng.integers(0, 2, size=(rows, n), dtype=np.int8) * 2 - 1
            flipped = np.abs((signs * moving).sum(axis=1))
        extreme += int(np.count_nonzero(flipped >= observed - _TOLERANCE))
    return (1 + extreme) / (1 + resamples)


def intervals(
    samples: Sequence[Sequence[float | None] | np.ndarray],
    pairs: Sequence[tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """`bootstrap_ci` of each sample and `paired_difference` of each pair (a, b), all computed together (the
    differences' intervals draw the same indices as samples of their size)."""
    diffs = [np.asarray(a, dtype=float) - np.asarray(b, dtype=float) for a, b in pairs]
    both = bootstrap_many([*samples, *diffs], resamples, seed)
    cis, results = both[: len(samples)], both[len(samples) :]
    for r in results:
        r["p"] = None
    todo = [i for i, d in enumerate(diffs) if len(d) and resamples > 0]
    moving = {i: diffs[i][diffs[i] != 0] for i in todo}
    for i in todo:
        if len(moving[i]) == 0:
            results[i]["p"] = 1.0
    todo = [i for i in todo if len(moving[i])]
    firsts, twin = _distinct([moving[i] for i in todo])
    p: dict[int, float] = {}

    def task(i: int) -> None:
        p[i] = _permutation_p(moving[i], resamples, seed)

    _run([functools.partial(task, todo[k]) for k in firsts], float(resamples) * sum(len(moving[i]) for i in todo))
    for k, i in enumerate(todo):
        results[i]["p"] = p[todo[twin[k]]]
    return cis, results


def paired_many(
    pairs: Sequence[tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    resamples: int = 1000,
    seed: int = 0,
) -> list[dict]:
    """`paired_difference` of each (a, b), computed together."""
    return intervals([], pairs, resamples, seed)[1]


def paired_difference(a: list[float], b: list[float], resamples: int = 1000, seed: int = 0) -> dict:
    """Mean of a - b over paired items, its bootstrap interval, and a two-sided sign-flip permutation p-value.

    Under the null hypothesis the two runs are exchangeable on each item, so each difference's sign is a
    coin flip; p = (1 + #{|mean of flipped| >= |observed|}) / (1 + resamples).
    """
    return paired_many([(a, b)], resamples, seed)[0]
