"""Export parity gates: does an exported artifact compute what the TensorFlow source computes?

The metrics and the verdict come from ``shared.consistency.export.compare_scores`` and the
tolerances from the shared threshold file (``shared/consistency/thresholds.toml``, overridable
with ``$MLPATTERNS_CHECK_CONFIG``), so ``mlpatterns check`` and the export gate judge alike.
Defaults (held-out months; label agreement of the decisions at the held-out base rate):

===================  ===============  ==============  =================
format               max |diff|       AUC drop        label agreement
===================  ===============  ==============  =================
tflite_float32       <= 1e-4          <= 0.001        >= 99.9 %
coreml (fp32)        <= 1e-4          <= 0.001        >= 99.9 %
onnx                 <= 1e-4          <= 0.001        >= 99.9 %
tflite_dynamic_int8  <= 0.02          <= 0.005        >= 99 %
tflite_int8          (reported)       <= 0.01         >= 90 %
===================  ===============  ==============  =================

Full-integer int8 quantizes every activation, so its gate is on ranking quality and decisions,
not per-row equality (measured: max |diff| ~5e-3 thanks to the 0/1-only graph input, see model.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from shared.consistency.config import ExportTolerance, load_thresholds
from shared.consistency.export import compare_scores

__all__ = ["FORMATS", "ParityError", "ParityReport", "compare", "render_table", "tolerance"]

#: Every export format, in the order they are built and reported.
FORMATS = ("tflite_float32", "tflite_dynamic_int8", "tflite_int8", "coreml", "onnx")
REFERENCE = "tensorflow"


class ParityError(RuntimeError):
    """An export is outside its tolerance against the source model."""


def tolerance(fmt: str) -> ExportTolerance:
    """The shared threshold table's tolerance for ``fmt`` (candidate name = format name)."""
    return load_thresholds().export(fmt)


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
        """Measured and within tolerance: numbers that were never measured (``ran`` False) are no pass."""
        return self.ran and not self.failures

    @property
    def auc_drop(self) -> float:
        return self.auc_source - self.auc_export

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ParityReport:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def compare(
    source: np.ndarray,
    export: np.ndarray,
    labels: np.ndarray,
    report: ParityReport,
    limits: ExportTolerance | None = None,
) -> ParityReport:
    """Fill ``report`` with the parity metrics of ``export`` vs ``source`` and any tolerance failure."""
    src = np.asarray(source, np.float64).ravel()
    exp = np.asarray(export, np.float64).ravel()
    if src.shape != exp.shape or src.size == 0:
        report.failures.append(f"{exp.size} export scores for {src.size} source rows")
        return report
    c = compare_scores(
        src,
        exp,
        labels,
        tolerance=limits or tolerance(report.format),
        reference_name=REFERENCE,
        candidate_name=report.format,
    )
    m = c.metrics
    report.rows = int(m["n"])
    report.max_abs_diff, report.mean_abs_diff = m["max_abs_diff"], m["mean_abs_diff"]
    report.agreement = m["label_agreement"]
    report.auc_source = m.get("auc_reference", math.nan)
    report.auc_export = m.get("auc_candidate", math.nan)
    report.failures += c.reasons
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
        verdict = "FAIL: " + "; ".join(r.failures) if r.failures else ("ok" if r.ran else "")
        if r.note:
            verdict = (verdict + " " if verdict else "") + f"({r.note})"
        lines.append(f"{r.format:<20} {size:>9} {nums}  {verdict}")
    return "\n".join(lines)
