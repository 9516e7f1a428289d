"""psi / agreement_rate / p99: properties rather than recorded numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.deploy.metrics import agreement_rate, p99, psi

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
    ref = np.repeat([0.1, 0.5, 0.9], 100)  # many ties: duplicate quantile edges are merged
    cur = np.full(50, 0.99)  # everything in one bin, the others empty
    value = psi(ref, cur)
    assert math.isfinite(value) and value > 1.0
    with pytest.raises(ValueError):
        psi([], [1.0])
    with pytest.raises(ValueError):
        psi([1.0], [1.0], bins=1)


def test_agreement_rate_and_p99() -> None:
    assert agreement_rate([0.1, 0.6, 0.7, 0.2], [0.2, 0.4, 0.9, 0.1]) == 0.75
    assert agreement_rate([0.3], [0.7], threshold=0.2) == 1.0
    assert agreement_rate([0.3, 0.3], [0.5, 0.7], threshold=0.25, threshold_b=0.6) == 0.5  # own cuts
    with pytest.raises(ValueError):
        agreement_rate([0.1], [0.1, 0.2])
    assert p99([]) == 0.0
    assert 99.0 <= p99(np.arange(1, 101)) <= 100.0
    assert p99([5.0] * 10) == 5.0
