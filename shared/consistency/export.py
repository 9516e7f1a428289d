"""Export skew: does an exported artifact predict what its source model predicts?

The generic part is ``compare_scores``: two score arrays on the same held-out rows (plus labels) ->
max/mean abs diff, decision agreement, AUC before and after, and a verdict against an
``ExportTolerance``. Anything that exports a model (the registry's scikit-learn -> ONNX, the mobile
pattern's TensorFlow -> TFLite / Core ML / ONNX) calls it and may write its comparisons with
``write_export_report``; ``check_exports`` reads such reports (or raw scores files written with
``write_scores``) and re-judges them under the current thresholds, so one config gates them all.

A comparison that could not run (Core ML off macOS) is recorded as ``not_run`` with its reason;
it never counts as a pass. Non-finite scores, an AUC that cannot be computed, and a mobile artifact
missing or changed since its report (sha256) fail whatever the tolerances.
"""

from __future__ import annotations

import json
import pickle
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shared.consistency.config import ExportTolerance, Thresholds, load_thresholds
from shared.consistency.report import CheckResult, Finding, Status
from shared.registry import IntegrityError, ModelVersion, Registry, sha256_file

__all__ = [
    "ExportComparison",
    "check_exports",
    "compare_scores",
    "mobile_reports",
    "not_run",
    "read_export_report",
    "read_scores",
    "write_export_report",
    "write_scores",
]

_REPORT_KIND = "mlpatterns.export_parity/1"
_PLOT_SAMPLE = 3000


@dataclass
class ExportComparison:
    """Reference vs candidate scores on one held-out set, with the verdict and why."""

    reference: str
    candidate: str
    status: Status
    metrics: dict[str, float] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    scores: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.reference} vs {self.candidate}"

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "candidate": self.candidate,
            "status": self.status,
            "metrics": self.metrics,
            "reasons": self.reasons,
        }


def compare_scores(
    reference: npt.ArrayLike,
    candidate: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    *,
    tolerance: ExportTolerance | None = None,
    reference_name: str = "reference",
    candidate_name: str = "candidate",
) -> ExportComparison:
    """Metrics of ``candidate`` against ``reference`` (probabilities of the positive class) and a verdict."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cand = np.asarray(candidate, dtype=np.float64).ravel()
    if ref.shape != cand.shape or ref.size == 0:
        raise ValueError(
            f"compare_scores needs two equal, non-empty arrays, got {ref.shape} and {cand.shape}"
        )
    tol = tolerance or ExportTolerance()
    y = None if labels is None else np.asarray(labels).ravel()
    if y is not None and y.shape != ref.shape:
        raise ValueError(f"labels have shape {y.shape}, scores {ref.shape}")
    binary = y is not None and len(np.unique(y)) == 2
    threshold = tol.decision_threshold
    if threshold is None:
        # Scores of a rare positive class seldom reach 0.5, where nearly every row agrees whatever
        # the candidate does; at the base rate the decision splits the rows and shifts show up.
        threshold = float(np.mean(y == y.max())) if binary and y is not None else float(np.mean(ref))
    diff = np.abs(ref - cand)
    metrics: dict[str, float] = {
        "n": float(ref.size),
        # A NaN score is as far off as it gets: it must fail, not vanish from the maximum.
        "max_abs_diff": float(np.max(diff)) if np.isfinite(diff).all() else float("inf"),
        "mean_abs_diff": float(np.mean(diff)) if np.isfinite(diff).all() else float("inf"),
        "label_agreement": float(np.mean((ref >= threshold) == (cand >= threshold))),
    }
    if binary:
        from sklearn.metrics import roc_auc_score

        # Always measured with binary labels: an AUC that cannot be computed (NaN scores) is a NaN
        # drop, which fails, instead of a ranking check that silently disappears.
        for key, scores in (("auc_reference", ref), ("auc_candidate", cand)):
            try:
                metrics[key] = float(roc_auc_score(y, scores))
            except ValueError:
                metrics[key] = float("nan")
    metrics["decision_threshold"] = threshold
    comparison = ExportComparison(reference_name, candidate_name, "pass", metrics, scores=(ref, cand))
    return _judge(comparison, tol)


def not_run(reference: str, candidate: str, reason: str) -> ExportComparison:
    """A comparison that could not be made, and why (it is reported, never counted as passing)."""
    return ExportComparison(reference, candidate, "not_run", reasons=[reason])


def _rejudge(c: ExportComparison, tol: ExportTolerance) -> ExportComparison:
    # A recorded comparison: this repository's thresholds apply, and the producer's failures stand.
    recorded = list(c.reasons) if c.status == "fail" else []
    judged = _judge(c, tol)
    if recorded:
        judged.status = "fail"
        judged.reasons = list(dict.fromkeys(recorded + judged.reasons))
    return judged


def _judge(c: ExportComparison, tol: ExportTolerance) -> ExportComparison:
    if c.status == "not_run":
        return c
    m, reasons = c.metrics, []
    if not np.isfinite(m.get("max_abs_diff", float("inf"))):
        # Not a matter of tolerance: even "max_abs_diff = inf" (reported, not gated) must not pass NaNs.
        reasons.append("non-finite scores (NaN or inf): fails whatever the tolerance")
    elif not m["max_abs_diff"] <= tol.max_abs_diff:
        reasons.append(f"max |diff| {m['max_abs_diff']:.3g} > {tol.max_abs_diff:g}")
    if not m.get("label_agreement", 0.0) >= tol.min_label_agreement:
        reasons.append(
            f"label agreement {m.get('label_agreement', float('nan')):.4f} < {tol.min_label_agreement:g}"
        )
    if "auc_reference" in m or "auc_candidate" in m:
        m["auc_drop"] = m.get("auc_reference", float("nan")) - m.get("auc_candidate", float("nan"))
        if np.isnan(m["auc_drop"]):
            reasons.append("AUC could not be computed")
        elif m["auc_drop"] > tol.max_auc_drop:
            reasons.append(f"AUC drop {m['auc_drop']:.4f} > {tol.max_auc_drop:g}")
    c.status, c.reasons = ("fail" if reasons else "pass"), reasons
    return c


def write_export_report(
    path: Path, comparisons: Sequence[ExportComparison], context: Mapping[str, Any] | None = None
) -> Path:
    """Write comparisons as JSON (the format ``check_exports`` reads back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "kind": _REPORT_KIND,
        "context": dict(context or {}),
        "comparisons": [c.to_dict() for c in comparisons],
    }
    path.write_text(json.dumps(doc, indent=2))
    return path


def read_export_report(path: Path) -> list[ExportComparison]:
    """Comparisons from a ``write_export_report`` file or a mobile pattern ``export.json``."""
    doc = json.loads(Path(path).read_text())
    if "formats" in doc and "version" in doc:
        folder = Path(path).parent
        return [_from_mobile(str(doc["version"]), fmt, r, folder) for fmt, r in doc["formats"].items()]
    if doc.get("kind") != _REPORT_KIND:
        raise ValueError(f"{path} is neither an export parity report nor a mobile export.json")
    return [
        ExportComparison(
            c["reference"],
            c["candidate"],
            c["status"],
            dict(c.get("metrics", {})),
            list(c.get("reasons", [])),
        )
        for c in doc["comparisons"]
    ]


def _from_mobile(version: str, fmt: str, r: Mapping[str, Any], folder: Path) -> ExportComparison:
    reference = f"mobile {version} tensorflow"
    failures = [str(f) for f in r.get("failures", [])] + _artifact_problems(folder, r)
    if not r.get("ran", True):
        # Numbers were never measured (Core ML off macOS): say so; a failed spec check still fails.
        reason = str(r.get("note") or "numeric parity not run")
        if failures:
            return ExportComparison(reference, fmt, "fail", reasons=[*failures, reason])
        return not_run(reference, fmt, reason)
    metrics = {
        "n": float(r.get("rows", 0)),
        "max_abs_diff": _finite(r.get("max_abs_diff")),
        "mean_abs_diff": _finite(r.get("mean_abs_diff")),
        "label_agreement": _finite(r.get("agreement"), default=0.0),
        # NaN, not 0.0: an AUC the producer could not compute must fail here too.
        "auc_reference": _finite(r.get("auc_source"), default=float("nan")),
        "auc_candidate": _finite(r.get("auc_export"), default=float("nan")),
    }
    # The producer's own failures (e.g. "could not run") stand even if the numbers pass here.
    return ExportComparison(reference, fmt, "fail" if failures else "pass", metrics, failures)


def _artifact_problems(folder: Path, r: Mapping[str, Any]) -> list[str]:
    # The numbers describe the bytes that were measured: a file replaced since says nothing of them.
    name, recorded = r.get("file"), r.get("sha256")
    if not name or not recorded:
        return ["the report records no artifact file and sha256 to check"]
    path = folder / str(name)
    if not path.is_file():
        return [f"artifact missing since its parity report: {path}"]
    actual = sha256_file(path)
    if actual != recorded:
        return [
            f"artifact changed since its parity report: {path} has sha256 {actual[:12]}…, "
            f"the report measured {str(recorded)[:12]}…"
        ]
    return []


def _finite(value: Any, default: float = float("inf")) -> float:
    number = float(value) if value is not None else float("nan")
    return number if np.isfinite(number) else default


def write_scores(
    path: Path, labels: npt.ArrayLike, scores: Mapping[str, npt.ArrayLike], reference: str
) -> Path:
    """Save held-out labels and each artifact's scores (``reference`` names the source model)."""
    if reference not in scores:
        raise ValueError(f"reference {reference!r} is not among the scores {sorted(scores)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"score_{k}": np.asarray(v, dtype=np.float64).ravel() for k, v in scores.items()}
    np.savez(path, labels=np.asarray(labels).ravel(), reference=np.array(reference), **arrays)  # type: ignore[arg-type]
    return path


def read_scores(path: Path) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """(labels, {artifact: scores}, reference name) from a ``write_scores`` file."""
    with np.load(path, allow_pickle=False) as data:
        scores = {k.removeprefix("score_"): data[k] for k in data.files if k.startswith("score_")}
        return data["labels"], scores, str(data["reference"])


def mobile_reports(home: Path | None = None) -> list[Path]:
    """Mobile export parity reports: ``$MLPATTERNS_HOME/mobile/exports/<version>/export.json``."""
    from shared import settings

    found = ((home or settings.home()) / "mobile" / "exports").glob("*/export.json")
    return sorted(found, key=lambda p: (len(p.parent.name), p.parent.name))


def check_exports(
    model: ModelVersion | None = None,
    *,
    registry: Registry | None = None,
    holdout: tuple[np.ndarray, np.ndarray] | None = None,
    reports: Sequence[Path] = (),
    scores_files: Sequence[Path] = (),
    thresholds: Thresholds | None = None,
    max_rows: int = 50_000,
) -> CheckResult:
    """scikit-learn vs ONNX of a registered version, plus every given report / scores file.

    ``holdout`` is ``(features, labels)``; by default the version's validation months, recomputed
    offline (rows the model never trained on).
    """
    limits = thresholds or load_thresholds()
    result = CheckResult("exports")
    comparisons: list[ExportComparison] = []
    if model is None:
        try:
            model = (registry or Registry()).latest()
        except KeyError as exc:
            comparisons.append(not_run("sklearn", "onnx", str(exc.args[0])))
    if model is not None:
        result.notes.append(f"model {model.version}")
        comparisons.append(_sklearn_vs_onnx(model, holdout, limits, max_rows))
    for path in reports:
        found = read_export_report(path)
        result.notes.append(f"{len(found)} comparisons from {path}")
        comparisons += [_rejudge(c, limits.export(c.candidate)) for c in found]
        comparisons += _coreml_absent(found)
    for path in scores_files:
        labels, scores, reference = read_scores(path)
        result.notes.append(f"scores of {len(scores) - 1} artifacts against {reference} from {path}")
        for name, values in scores.items():
            if name != reference:
                comparisons.append(
                    compare_scores(
                        scores[reference],
                        values,
                        labels,
                        tolerance=limits.export(name),
                        reference_name=reference,
                        candidate_name=name,
                    )
                )
    for c in comparisons:
        result.findings.append(Finding(c.name, c.status, dict(c.metrics), "; ".join(c.reasons)))
        if c.scores is not None:
            result.plot_data[c.name] = {
                "reference": c.scores[0][:_PLOT_SAMPLE],
                "candidate": c.scores[1][:_PLOT_SAMPLE],
            }
    return result


def _coreml_absent(found: Sequence[ExportComparison]) -> list[ExportComparison]:
    # A report without any Core ML row must still say that Core ML was not compared.
    if any("coreml" in c.candidate.lower() for c in found):
        return []
    where = "this is not macOS" if platform.system() != "Darwin" else "the report has no Core ML row"
    return [
        not_run(found[0].reference if found else "tensorflow", "coreml", f"Core ML not compared: {where}")
    ]


def _sklearn_vs_onnx(
    model: ModelVersion, holdout: tuple[np.ndarray, np.ndarray] | None, limits: Thresholds, max_rows: int
) -> ExportComparison:
    import onnxruntime as ort

    try:
        pkl, onnx = model.artifact("model.pkl"), model.artifact("model.onnx")
    except IntegrityError as exc:  # found broken: that is a failure, not a skipped check
        return ExportComparison("sklearn", "onnx", "fail", reasons=[str(exc)])
    except KeyError as exc:
        return not_run("sklearn", "onnx", f"{model.version}: {exc.args[0]}")
    if holdout is None:
        from shared.example.train import feature_table

        months = tuple(model.training.get("valid_months") or ())
        if not months:
            return not_run("sklearn", "onnx", f"{model.version} records no held-out months")
        flights, table = feature_table(months)
        holdout = (table.to_numpy(np.float32), flights["label"].to_numpy())
    x, y = holdout
    if len(x) > max_rows:
        rows = np.random.default_rng(0).choice(len(x), size=max_rows, replace=False)
        x, y = x[rows], y[rows]
    with open(pkl, "rb") as f:
        estimator = pickle.load(f)  # checksum verified by artifact() above
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    p_sklearn = estimator.predict_proba(x32.astype(np.float64))[:, 1]
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    p_onnx = session.run(["probabilities"], {session.get_inputs()[0].name: x32})[0][:, 1]
    return compare_scores(
        p_sklearn, p_onnx, y, tolerance=limits.export("onnx"), reference_name="sklearn", candidate_name="onnx"
    )
