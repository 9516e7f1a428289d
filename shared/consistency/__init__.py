"""Train/serve consistency: feature skew per example, export skew, distribution skew; one report, one gate.

    from shared.consistency import check_features, load_records
    result = check_features(load_records(["rest_api"]))
    result.passed, result.flagged

``mlpatterns check [features|exports|drift|all]`` runs them from the prediction logs and the
registry, prints a table, writes JSON + HTML and exits non-zero when a gate fails.
"""

from shared.consistency.config import ExportTolerance, Thresholds, load_thresholds
from shared.consistency.drift import check_drift
from shared.consistency.export import (
    ExportComparison,
    check_exports,
    compare_scores,
    mobile_reports,
    read_export_report,
    write_export_report,
    write_scores,
)
from shared.consistency.features import check_features, load_records
from shared.consistency.gate import ConsistencyGate
from shared.consistency.replay import replay_serving
from shared.consistency.report import CheckResult, ConsistencyReport, Finding
from shared.consistency.run import run_checks

__all__ = [
    "CheckResult",
    "ConsistencyGate",
    "ConsistencyReport",
    "ExportComparison",
    "ExportTolerance",
    "Finding",
    "Thresholds",
    "check_drift",
    "check_exports",
    "check_features",
    "compare_scores",
    "load_records",
    "load_thresholds",
    "mobile_reports",
    "read_export_report",
    "replay_serving",
    "run_checks",
    "write_export_report",
    "write_scores",
]
