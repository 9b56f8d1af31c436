"""Pure metric functions for the emotional-intelligence analysis (no I/O, no models).

Each returns None where the quantity is undefined (no data, too few points) rather than inventing 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from realtalk_cli.errors import RealtalkError


def entropy_bits(labels: Sequence[str]) -> float | None:
    """Shannon entropy of the label distribution, in bits."""
    if not labels:
        return None
    counts = Counter(labels)
    n = len(labels)
    return max(0.0, -sum(c / n * math.log2(c / n) for c in counts.values()))


def frequency(flags: Sequence[bool | None]) -> float | None:
    """Share of True among the known flags."""
    known = [f for f in flags if f is not None]
    return sum(known) / len(known) if known else None


def mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def stability(sessions: Sequence[Sequence[str | None]]) -> float | None:
    """Share of a speaker's messages whose label repeats their own previous message in the same session.

    `sessions` holds, per session, the speaker's labels in order.
    """
    same = pairs = 0
    for labels in sessions:
        known = [x for x in labels if x is not None]
        for previous, current in zip(known, known[1:], strict=False):
            pairs += 1
            same += previous == current
    return same / pairs if pairs else None


def alignment(sessions: Sequence[Sequence[tuple[str, str | None]]], speaker: str) -> float | None:
    """Share of `speaker`'s messages that repeat the label of the partner's immediately preceding message.

    `sessions` holds, per session, (speaker, label) for every message in order; only messages that
    directly follow a partner's message count.
    """
    same = pairs = 0
    for messages in sessions:
        for (prev_speaker, prev_label), (who, label) in zip(messages, messages[1:], strict=False):
            if who == speaker and prev_speaker != speaker and label is not None and prev_label is not None:
                pairs += 1
                same += label == prev_label
    return same / pairs if pairs else None


def linear_slope(ys: Sequence[float]) -> float | None:
    """Least-squares slope of y over x = 0, 1, 2, ..."""
    n = len(ys)
    if n < 2:
        return None
    x_mean, y_mean = (n - 1) / 2, sum(ys) / n
    sxx = sum((x - x_mean) ** 2 for x in range(n))
    return sum((x - x_mean) * (y - y_mean) for x, y in zip(range(n), ys, strict=True)) / sxx


def exponential_rate(ys: Sequence[float]) -> float | None:
    """Growth rate b of y = a * exp(b x), x = 1..k, fitted as the paper does (`social_skills.py`).

    scipy's `curve_fit` with its defaults (start a = b = 1, Levenberg-Marquardt) and maxfev=10000: least
    squares on y itself, not on log y, so zeros are allowed. None when the fit fails (the paper's run aborts).
    """
    if len(ys) < 2:
        return None
    import warnings

    import numpy as np

    try:
        from scipy.optimize import OptimizeWarning, curve_fit
    except ImportError:
        raise RealtalkError("the intimacy growth fit needs scipy: pip install 'realtalk-cli[analysis]'") from None
    xs = np.arange(1, len(ys) + 1, dtype=float)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", OptimizeWarning)
            (_, rate), _ = curve_fit(lambda x, a, b: a * np.exp(b * x), xs, np.asarray(ys, float), maxfev=10000)
    except (RuntimeError, ValueError):
        return None
    return float(rate) if math.isfinite(rate) else None


def quadratic_fit(ys: Sequence[float]) -> tuple[float, float] | None:
    """(a, b) of the least-squares fit y = a x^2 + b x + c with x = 1..k, as the paper numbers sessions."""
    n = len(ys)
    if n < 3:
        return None
    xs = range(1, n + 1)
    s = [sum(x**k for x in xs) for k in range(5)]  # sums of x^0 .. x^4
    t = [sum(y * x**k for x, y in zip(xs, ys, strict=True)) for k in range(3)]
    # Normal equations for (c, b, a), solved by Cramer's rule.
    m = [[s[0], s[1], s[2]], [s[1], s[2], s[3]], [s[2], s[3], s[4]]]
    det = _det3(m)
    if abs(det) < 1e-12:
        return None
    m_a = [row[:2] + [t[i]] for i, row in enumerate(m)]
    m_b = [[row[0], t[i], row[2]] for i, row in enumerate(m)]
    return _det3(m_a) / det, _det3(m_b) / det


def quadratic_curvature(ys: Sequence[float]) -> float | None:
    """The coefficient a of the quadratic fit (the paper's `curvature`)."""
    fit = quadratic_fit(ys)
    return fit[0] if fit else None


def quadratic_linear_coefficient(ys: Sequence[float]) -> float | None:
    """The coefficient b of the quadratic fit (the paper's `linear_coefficient`, with x = 1..k)."""
    fit = quadratic_fit(ys)
    return fit[1] if fit else None


def _det3(m: list[list[float]]) -> float:
    return (
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    )
