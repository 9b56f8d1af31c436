from __future__ import annotations

import math

import pytest

from realtalk_cli.analysis.metrics import (
    alignment,
    entropy_bits,
    exponential_rate,
    frequency,
    linear_slope,
    quadratic_curvature,
    quadratic_linear_coefficient,
    stability,
)


def test_entropy_hand_computed():
    assert entropy_bits(["a", "b"]) == 1.0
    assert entropy_bits(["a", "a", "b", "c"]) == pytest.approx(1.5)  # -(.5 log .5 + 2 * .25 log .25)
    assert entropy_bits(["a"]) == 0.0  # one label
    assert entropy_bits(["x"] * 5) == 0.0
    assert entropy_bits([]) is None


def test_frequency_ignores_unknown():
    assert frequency([True, False, None, True]) == pytest.approx(2 / 3)
    assert frequency([None]) is None


def test_stability_counts_pairs_within_sessions_only():
    # session 1: pos pos neg -> pairs (pos,pos)=same, (pos,neg)=diff; session 2: neg -> no pair
    assert stability([["pos", "pos", "neg"], ["neg"]]) == 0.5
    assert stability([["pos"]]) is None  # one message


def test_alignment_only_counts_replies_to_the_partner():
    session = [("A", "pos"), ("B", "pos"), ("B", "neg"), ("A", "neg"), ("B", "neg")]
    # B replies to A twice: (A pos -> B pos) same, (A neg -> B neg) same; B after B does not count
    assert alignment([session], "B") == 1.0
    # A replies to B once: (B neg -> A neg) same
    assert alignment([session], "A") == 1.0
    assert alignment([[("A", "pos"), ("B", "neg")]], "B") == 0.0
    assert alignment([[("A", "pos")]], "A") is None


def test_curve_fits_hand_computed_and_degenerate():
    assert linear_slope([1, 3, 5]) == pytest.approx(2.0)
    assert linear_slope([2, 2, 2]) == 0.0  # constant series
    assert linear_slope([4]) is None  # one point
    assert exponential_rate([1, math.e, math.e**2]) == pytest.approx(1.0)
    assert exponential_rate([0.5, 0.0, 2.0]) is not None  # least squares on y, as the paper: zeros allowed
    assert exponential_rate([0.3]) is None
    assert quadratic_linear_coefficient([0, 1, 4, 9]) == pytest.approx(-2.0)  # (x - 1)^2 with x = 1..4
    assert quadratic_curvature([0, 1, 4, 9]) == pytest.approx(1.0)  # y = x^2
    assert quadratic_curvature([1, 3, 5, 7]) == pytest.approx(0.0, abs=1e-9)
    assert quadratic_curvature([1, 2]) is None
