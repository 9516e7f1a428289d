"""Small, dependency-free statistics used by the deployment gates (and reusable elsewhere).

``psi`` is the population stability index of one score distribution against a reference one; the
consistency checks may reuse it, so it takes plain arrays and has no deployment notions in it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["agreement_rate", "p99", "psi", "quantile_histograms"]

ArrayLike = npt.ArrayLike


def quantile_histograms(
    reference: np.ndarray, current: np.ndarray, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both samples in bins cut at the reference's ``bins``-quantiles.

    The outer bins are open, so values outside the reference's range still count. A value that
    holds more than one bin's share of the reference shows up as a repeated quantile edge (no
    rain: most hours' precipitation is 0); it gets a bin of its own, between the intervals below
    and above it. Merging the repeats into one edge instead would put the point mass in the same
    bin as everything above it, and a tripling of rainy hours would not move the histogram at all.
    """
    edges, repeats = np.unique(
        np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1]), return_counts=True
    )
    heavy = edges[repeats > 1]

    def codes(x: np.ndarray) -> np.ndarray:
        # Interval i (between edges i-1 and i) is code 2i; the point mass at edge i is code 2i+1.
        return 2 * np.searchsorted(edges, x, side="left") + np.isin(x, heavy)

    size = 2 * edges.size + 1
    return np.bincount(codes(reference), minlength=size), np.bincount(codes(current), minlength=size)


def psi(reference: ArrayLike, current: ArrayLike, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``current`` against ``reference``.

    Bins are :func:`quantile_histograms`': each holds about ``1/bins`` of the reference, so the
    index is insensitive to the scale of the scores, and a heavy tie has a bin of its own. Empty
    bins get ``eps`` instead of zero so the log stays finite. Usual reading: < 0.1 stable,
    0.1-0.25 moderate shift, > 0.25 large shift.
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cur = np.asarray(current, dtype=np.float64).ravel()
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if ref.size == 0 or cur.size == 0:
        raise ValueError("psi needs a non-empty reference and current sample")
    if bins < 2:
        raise ValueError("psi needs at least 2 bins")
    ref_counts, cur_counts = quantile_histograms(ref, cur, bins)
    ref_frac = np.maximum(ref_counts / ref.size, eps)
    cur_frac = np.maximum(cur_counts / cur.size, eps)
    # Bins empty on both sides (the point-mass slot of an untied edge) add exactly 0.
    return float(np.sum((cur_frac - ref_frac) * np.log(cur_frac / ref_frac)))


def agreement_rate(
    a: ArrayLike, b: ArrayLike, threshold: float = 0.5, threshold_b: float | None = None
) -> float:
    """Share of rows where two score vectors take the same decision (score >= threshold).

    ``threshold_b`` is ``b``'s own cut when the two models decide from different scores.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"agreement_rate: shapes differ {x.shape} vs {y.shape}")
    if x.size == 0:
        raise ValueError("agreement_rate needs at least one pair")
    cut_b = threshold if threshold_b is None else threshold_b
    return float(np.mean((x >= threshold) == (y >= cut_b)))


def p99(latencies_ms: ArrayLike) -> float:
    """99th percentile (0.0 for no samples, so an idle slot never trips a latency guardrail)."""
    values = np.asarray(latencies_ms, dtype=np.float64).ravel()
    return float(np.percentile(values, 99)) if values.size else 0.0
