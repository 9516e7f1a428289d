"""psi / agreement_rate / p99: properties rather than recorded numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.deploy.metrics import agreement_rate, p99, psi, quantile_histograms

samples = st.integers(0, 2**32 - 1).map(lambda seed: np.random.default_rng(seed))


@settings(max_examples=100, deadline=None)
@given(samples, st.floats(0.1, 10.0), st.floats(-5.0, 5.0))
def test_psi_is_nonnegative_and_invariant_to_affine_rescaling(
    rng: np.random.Generator, a: float, b: float
) -> None:
    ref, cur = rng.normal(size=400), rng.normal(0.3, 1.2, size=300)
    value = psi(ref, cur)
    assert value >= 0.0
    assert math.isclose(psi(a * ref + b, a * cur + b), value, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=50, deadline=None)
@given(samples)
def test_psi_of_a_sample_with_itself_is_zero(rng: np.random.Generator) -> None:
    x = rng.beta(2, 5, size=1000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)


def test_psi_grows_with_the_shift() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5000)
    shifts = [psi(ref, rng.normal(mu, 1.0, size=5000)) for mu in (0.0, 0.25, 0.5, 1.0)]
    assert shifts == sorted(shifts)
    assert shifts[0] < 0.02 < 0.25 < shifts[-1]  # same distribution is stable, 1 sd is a large shift


def test_psi_handles_empty_bins_and_ties() -> None:
    ref = np.repeat([0.1, 0.5, 0.9], 100)  # many ties: each tied value is a bin of its own
    cur = np.full(50, 0.99)  # everything in one bin, the others empty
    value = psi(ref, cur)
    assert math.isfinite(value) and value > 1.0
    with pytest.raises(ValueError):
        psi([], [1.0])
    with pytest.raises(ValueError):
        psi([1.0], [1.0], bins=1)


def test_psi_sees_a_point_mass_shrink() -> None:
    # Hourly precipitation: 0 most of the time. The nine quantile edges are all 0; merged into one
    # edge, every rainy hour shared the zeros' bin and three times the rain scored exactly 0.
    rng = np.random.default_rng(1)

    def rain(n: int, share: float) -> np.ndarray:
        return np.where(rng.random(n) < share, rng.exponential(0.1, n), 0.0)

    ref = rain(20_000, 0.07)
    values = [psi(ref, rain(8_000, share)) for share in (0.07, 0.1, 0.2)]
    assert values == sorted(values)
    assert values[0] < 0.01 and values[-1] > 0.1
    assert psi(ref, ref[ref > 0]) > 5.0  # no dry hour left: the whole mass moved


def test_psi_of_one_tied_value_against_another_is_large_from_either_side() -> None:
    # A canary's single repeated flight: the candidate's score moved below or above the live one.
    live = np.full(500, 0.145)
    assert psi(live, np.full(500, 0.116)) > 10.0
    assert psi(live, np.full(500, 0.16)) > 10.0
    assert psi(live, np.full(500, 0.145)) == 0.0


def test_quantile_histograms_keep_every_value() -> None:
    rng = np.random.default_rng(2)
    ref = np.concatenate([np.zeros(300), rng.integers(1, 5, 700).astype(float)])
    cur = rng.integers(-2, 8, 400).astype(float)
    ref_counts, cur_counts = quantile_histograms(ref, cur, 10)
    assert ref_counts.sum() == ref.size and cur_counts.sum() == cur.size
    assert ref_counts.size == cur_counts.size and ref_counts.size % 2 == 1


def test_agreement_rate_and_p99() -> None:
    assert agreement_rate([0.1, 0.6, 0.7, 0.2], [0.2, 0.4, 0.9, 0.1]) == 0.75
    assert agreement_rate([0.3], [0.7], threshold=0.2) == 1.0
    assert agreement_rate([0.3, 0.3], [0.5, 0.7], threshold=0.25, threshold_b=0.6) == 0.5  # own cuts
    with pytest.raises(ValueError):
        agreement_rate([0.1], [0.1, 0.2])
    assert p99([]) == 0.0
    assert 99.0 <= p99(np.arange(1, 101)) <= 100.0
    assert p99([5.0] * 10) == 5.0
