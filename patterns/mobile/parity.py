"""Export parity: does an exported artifact compute what the TensorFlow source computes?

``compare`` takes plain arrays (source probabilities, export probabilities, labels) and a
``Tolerance``; it is what the export gates run and what a consistency validator can call for any
pair of models on a held-out set. Default tolerances per format (``TOLERANCES``):

===================  ===============  ==============  =================
format               max |diff|       AUC drop        label agreement
===================  ===============  ==============  =================
tflite_float32       <= 1e-4          <= 0.001        >= 99.9 %
coreml (fp32)        <= 1e-4          <= 0.001        >= 99.9 %
onnx                 <= 1e-4          <= 0.001        >= 99.9 %
tflite_dynamic_int8  <= 0.02          <= 0.005        >= 99 %
tflite_int8          (reported)       <= 0.01         >= 90 %
===================  ===============  ==============  =================

Full-integer int8 quantizes every activation (one-hots and the scaled distance share one int8
scale in the concatenation), so per-row scores move by a few hundredths; its gate is on ranking
quality (AUC) and decisions, not on per-row equality.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["FORMATS", "TOLERANCES", "ParityError", "ParityReport", "Tolerance", "compare", "render_table"]

#: Every export format, in the order they are built and reported.
FORMATS = ("tflite_float32", "tflite_dynamic_int8", "tflite_int8", "coreml", "onnx")


class ParityError(RuntimeError):
    """An export is outside its tolerance against the source model."""


@dataclass(frozen=True)
class Tolerance:
    max_abs_diff: float | None = None  # None = reported, not gated
    max_auc_drop: float = 0.001
    min_agreement: float = 0.999
    threshold: float = 0.5  # decision threshold for label agreement


TOLERANCES: dict[str, Tolerance] = {
    "tflite_float32": Tolerance(1e-4, 0.001, 0.999),
    "coreml": Tolerance(1e-4, 0.001, 0.999),
    "onnx": Tolerance(1e-4, 0.001, 0.999),
    "tflite_dynamic_int8": Tolerance(0.02, 0.005, 0.99),
    "tflite_int8": Tolerance(None, 0.01, 0.90),
}


@dataclass
class ParityReport:
    """One export against the source on the held-out rows; ``ran`` False = numbers not measured."""

    format: str
    file: str
    bytes: int
    sha256: str
    rows: int = 0
    ran: bool = True
    max_abs_diff: float = math.nan
    mean_abs_diff: float = math.nan
    agreement: float = math.nan
    auc_source: float = math.nan
    auc_export: float = math.nan
    failures: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def auc_drop(self) -> float:
        return self.auc_source - self.auc_export

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParityReport:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    # Rank-based (Mann-Whitney) AUC with average ranks for ties; no scikit-learn needed on device hosts.
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def compare(
    source: np.ndarray,
    export: np.ndarray,
    labels: np.ndarray,
    tolerance: Tolerance,
    report: ParityReport,
) -> ParityReport:
    """Fill ``report`` with parity metrics of ``export`` vs ``source`` and the tolerance failures."""
    src = np.asarray(source, np.float64).ravel()
    exp = np.asarray(export, np.float64).ravel()
    y = np.asarray(labels).ravel()
    if src.shape != exp.shape or src.shape != y.shape:
        report.failures.append(f"shape mismatch: source {src.shape}, export {exp.shape}, labels {y.shape}")
        return report
    diff = np.abs(src - exp)
    diff[~np.isfinite(diff)] = np.inf
    report.rows = int(src.size)
    report.max_abs_diff = float(diff.max()) if diff.size else 0.0
    report.mean_abs_diff = float(diff.mean()) if diff.size else 0.0
    report.agreement = float(np.mean((src >= tolerance.threshold) == (exp >= tolerance.threshold)))
    report.auc_source, report.auc_export = _auc(y, src), _auc(y, np.nan_to_num(exp, nan=-1.0))
    t = tolerance
    if t.max_abs_diff is not None and not report.max_abs_diff <= t.max_abs_diff:
        report.failures.append(f"max |diff| {report.max_abs_diff:.3g} > {t.max_abs_diff:g}")
    if not report.auc_drop <= t.max_auc_drop:
        report.failures.append(
            f"AUC {report.auc_source:.4f} -> {report.auc_export:.4f} (drop {report.auc_drop:.4f} > "
            f"{t.max_auc_drop:g})"
        )
    if not report.agreement >= t.min_agreement:
        report.failures.append(f"label agreement {report.agreement:.2%} < {t.min_agreement:.2%}")
    return report


def render_table(reports: list[ParityReport]) -> str:
    """A fixed-width table: format, size, max |diff|, agreement, AUC before -> after, verdict."""
    head = f"{'format':<20} {'size':>9} {'max|diff|':>10} {'agree':>8} {'AUC src':>8} {'AUC exp':>8}  verdict"
    lines = [head, "-" * len(head)]
    for r in reports:
        size = f"{r.bytes / 1024:.1f} KiB"
        if r.ran:
            nums = f"{r.max_abs_diff:>10.2e} {r.agreement:>8.2%} {r.auc_source:>8.4f} {r.auc_export:>8.4f}"
        else:
            nums = f"{'-':>10} {'-':>8} {'-':>8} {'-':>8}"
        verdict = "ok" if r.passed and r.ran else ("FAIL: " + "; ".join(r.failures) if r.failures else "")
        if r.note:
            verdict = (verdict + " " if verdict else "") + f"({r.note})"
        lines.append(f"{r.format:<20} {size:>9} {nums}  {verdict}")
    return "\n".join(lines)
