"""Feature skew, per example: recompute every logged request offline and compare with what serving used.

Each prediction-log record holds the raw request (with its ``sched_ts``) and the feature values the
serving path used. The offline executor recomputes the features of all records at once, for the
same key and the same time, from the event tables; a feature whose values differ in more than the
allowed share of examples is flagged, with examples and hints (a constant served/offline ratio points
to a unit change, served counts above offline ones to a window that sees too much).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shared.consistency.config import Thresholds, load_thresholds
from shared.consistency.report import CheckResult, Finding, Status
from shared.example.data import event_sources
from shared.features import FeatureSet, OfflineExecutor
from shared.registry import FingerprintMismatch, IntegrityError, Registry

__all__ = ["check_features", "load_records", "logged_value", "served_features"]

_PLOT_SAMPLE = 3000


def load_records(
    patterns: Sequence[str] | None = None, model_version: str | None = None
) -> list[dict[str, Any]]:
    """Prediction-log records of ``patterns`` (default: every pattern that logged), optionally one version."""
    from shared.predlog import iter_records

    records: list[dict[str, Any]] = []
    selected: list[str | None] = list(patterns) if patterns else [None]
    for pattern in selected:
        records.extend(iter_records(pattern))
    if model_version is not None:
        records = [r for r in records if r.get("model_version") == model_version]
    return records


def check_features(
    records: Iterable[Mapping[str, Any]],
    *,
    feature_set: FeatureSet | None = None,
    sources: Mapping[str, pd.DataFrame] | None = None,
    thresholds: Thresholds | None = None,
    registry: Registry | None = None,
    recompute_predictions: bool = True,
) -> CheckResult:
    """Per-feature mismatch rate between logged serving features and the offline recomputation.

    ``sources`` default to the example's event tables for the whole year (what training used).
    With ``recompute_predictions`` a ``prediction`` row compares each logged prediction with the
    registry's model (the logged version) run on the logged features.
    """
    from shared.example.flights import FLIGHT_FEATURES

    fs = feature_set or FLIGHT_FEATURES
    limits = thresholds or load_thresholds()
    result = CheckResult("features")
    rows = [r for r in records if isinstance(r.get("request"), Mapping)]
    if not rows:
        result.not_run_reason = "no prediction-log records to check (serve some traffic first)"
        return result
    requests, usable = _request_table(rows, fs)
    if len(usable) < len(rows):
        # A row of its own, not a note: a pattern whose log lost a field would go unchecked.
        lacking = sorted({f for r in rows for f in fs.request_fields if f not in r["request"]})
        skipped = len(rows) - len(usable)
        reason = (
            f"{skipped:,} of {len(rows):,} records lack request field(s) {', '.join(lacking)}: not checked"
        )
        result.findings.append(
            Finding("request fields", "not_run", {"skipped": skipped, "n": len(rows)}, reason)
        )
    rows = [rows[i] for i in usable]
    if not rows:
        result.not_run_reason = "no record carries the request fields needed to recompute features"
        return result
    events = _around(requests[fs.request_time].to_numpy(np.int64), sources or event_sources(), fs)
    offline = OfflineExecutor(fs).compute(requests, events).to_numpy(np.float64)
    served = served_features(rows, fs.names)
    logged = np.array([[n in r["features"] for n in fs.names] for r in rows], dtype=bool)
    patterns = Counter(str(r.get("pattern", "?")) for r in rows)
    result.notes.append(
        f"{len(rows):,} logged examples recomputed offline ("
        + ", ".join(f"{p}: {n:,}" for p, n in sorted(patterns.items()))
        + ")"
    )
    for j, name in enumerate(fs.names):
        finding, data = _compare(name, served[:, j], offline[:, j], logged[:, j], rows, limits, fs)
        result.findings.append(finding)
        result.plot_data[name] = data
    if recompute_predictions:
        findings, data = _predictions(rows, served, offline, registry, limits, fs)
        result.findings.extend(findings)
        result.plot_data["prediction"] = data
    return result


def _request_table(rows: Sequence[Mapping[str, Any]], fs: FeatureSet) -> tuple[pd.DataFrame, list[int]]:
    usable = [i for i, r in enumerate(rows) if all(f in r["request"] for f in fs.request_fields)]
    table = pd.DataFrame(
        {f: [rows[i]["request"][f] for i in usable] for f in fs.request_fields}, index=range(len(usable))
    )
    table[fs.request_time] = table[fs.request_time].astype(np.int64)
    return table, usable


def _around(t: np.ndarray, sources: Mapping[str, pd.DataFrame], fs: FeatureSet) -> dict[str, pd.DataFrame]:
    # Only events that a window or an as-of lookup of these requests can reach; same answers, and
    # a few days of logs do not pay for grouping a year of events.
    out = {}
    for name, events in sources.items():
        times = events[fs.source(name).time_column].to_numpy(np.int64)
        keep = (times >= t.min() - fs.retention_seconds(name)) & (times <= t.max())
        out[name] = events[keep]
    return out


def served_features(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> np.ndarray:
    """The features logged with ``rows`` as a float matrix in ``names`` order (NaN where missing)."""
    return np.array([[logged_value(r["features"].get(n)) for n in names] for r in rows], dtype=np.float64)


def logged_value(value: Any) -> float:
    """A logged feature or prediction as a float (null or unparsable -> NaN)."""
    try:
        return float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


def _matches(served: np.ndarray, offline: np.ndarray, abs_tol: float, rel_tol: float) -> np.ndarray:
    both_nan = np.isnan(served) & np.isnan(offline)
    with np.errstate(invalid="ignore"):
        close = np.abs(served - offline) <= abs_tol + rel_tol * np.abs(offline)
    return both_nan | close


def _compare(
    name: str,
    served: np.ndarray,
    offline: np.ndarray,
    logged: np.ndarray,
    rows: Sequence[Mapping[str, Any]],
    limits: Thresholds,
    fs: FeatureSet,
) -> tuple[Finding, dict[str, Any]]:
    tol = limits.feature(name)
    bad = ~_matches(served, offline, tol["abs_tol"], tol["rel_tol"]) | ~logged
    n, k = len(served), int(bad.sum())
    rate = k / n
    metrics: dict[str, Any] = {"mismatch_rate": rate, "mismatches": k, "n": n}
    both = bad & np.isfinite(served) & np.isfinite(offline)
    metrics["max_abs_diff"] = float(np.max(np.abs(served[both] - offline[both]))) if both.any() else 0.0
    metrics["nan_mismatches"] = int((bad & (np.isnan(served) != np.isnan(offline))).sum())
    message = ""
    if not logged.all():
        message = f"not logged in {int((~logged).sum()):,} records"
    elif k:
        message = _hint(served[bad], offline[bad])
    passed = rate <= tol["max_mismatch_rate"]
    examples = [
        {
            "request_id": rows[i].get("request_id"),
            "pattern": rows[i].get("pattern"),
            # What state is looked up by (for flights: carrier and origin), whatever the feature set.
            "keys": {c: rows[i]["request"].get(c) for s in fs.sources for c in s.key_columns},
            fs.request_time: rows[i]["request"].get(fs.request_time),
            "served": float(served[i]),
            "offline": float(offline[i]),
        }
        for i in np.flatnonzero(bad)[: limits.max_examples]
    ]
    data = {"served": served[:_PLOT_SAMPLE], "offline": offline[:_PLOT_SAMPLE]} if k else {}
    return Finding(name, "pass" if passed else "fail", metrics, message, examples), data


def _hint(served: np.ndarray, offline: np.ndarray) -> str:
    """A short guess at the kind of skew, from the mismatching pairs only."""
    finite = np.isfinite(served) & np.isfinite(offline) & (offline != 0)
    if finite.sum() >= 3:
        ratio = served[finite] / offline[finite]
        # A ratio of ~1 is rounding (float32, say), not a unit: the message would mislead.
        if np.allclose(ratio, ratio[0], rtol=1e-3) and not np.isclose(ratio[0], 1.0, rtol=1e-3):
            return f"served = {ratio[0]:.4g} x offline (a unit or scale change?)"
    parts = []
    if np.isnan(served).any() or np.isnan(offline).any():
        parts.append(f"missing: served {int(np.isnan(served).sum())}, offline {int(np.isnan(offline).sum())}")
    both = np.isfinite(served) & np.isfinite(offline)
    if both.any():
        above = float(np.mean(served[both] > offline[both]))
        parts.append(f"served > offline in {above:.0%} of mismatches")
    return "; ".join(parts)


def _predictions(
    rows: Sequence[Mapping[str, Any]],
    served: np.ndarray,
    offline: np.ndarray,
    registry: Registry | None,
    limits: Thresholds,
    fs: FeatureSet,
) -> tuple[list[Finding], dict[str, Any]]:
    """The ``prediction`` row; and a ``not_run`` row for traffic of versions the registry lacks
    (served by a model nobody can check: a strict gate fails on it)."""
    from shared.predictor import Predictor

    registry = registry or Registry()
    logged = np.array([logged_value(r.get("prediction")) for r in rows])
    model_on_served = np.full(len(rows), np.nan)
    model_on_offline = np.full(len(rows), np.nan)
    versions = np.array([str(r.get("model_version")) for r in rows])
    missing: list[str] = []
    other_features: list[str] = []
    for version in sorted(set(versions)):
        idx = np.flatnonzero(versions == version)
        try:
            predictor = Predictor(registry.get(version), running_fingerprint=fs.fingerprint())
        except KeyError:
            missing.append(version)
            continue
        except FingerprintMismatch:
            # Served by a model trained on other feature definitions: skew by construction.
            other_features.append(f"{version} (trained on other feature definitions)")
            continue
        except IntegrityError as exc:
            other_features.append(f"{version} ({exc})")
            continue
        model_on_served[idx] = predictor.predict_proba(served[idx])
        model_on_offline[idx] = predictor.predict_proba(offline[idx])
    checked = ~np.isnan(model_on_served)
    if other_features:
        reason = f"cannot reproduce the served model: {'; '.join(other_features)}"
        return [Finding("prediction", "fail", {"n": len(rows)}, reason)], {}
    unregistered = []
    if missing:
        n = int(np.isin(versions, missing).sum())
        reason = (
            f"{n:,} of {len(rows):,} records were served by model version(s) {', '.join(missing)}, "
            f"not in the registry at {registry.root}: not checked"
        )
        unregistered = [Finding("prediction (unregistered)", "not_run", {"n": n}, reason)]
    if not checked.any():
        return unregistered, {}
    tol = limits.feature("prediction")
    bad = checked & ~_matches(logged, model_on_served, tol["abs_tol"], tol["rel_tol"])
    rate = float(bad.sum() / checked.sum())
    metrics = {
        "mismatch_rate": rate,
        "mismatches": int(bad.sum()),
        "n": int(checked.sum()),
        "max_abs_diff": float(np.nanmax(np.abs(logged[checked] - model_on_served[checked]))),
        # How far the feature skew moved the answers (information, not a gate).
        "feature_skew_impact": float(np.nanmax(np.abs(model_on_offline[checked] - logged[checked]))),
    }
    status: Status = "pass" if rate <= tol["max_mismatch_rate"] else "fail"
    data = {"served": logged[checked][:_PLOT_SAMPLE], "offline": model_on_offline[checked][:_PLOT_SAMPLE]}
    return [Finding("prediction", status, metrics), *unregistered], data
