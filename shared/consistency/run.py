"""Run a selection of checks against one MLPATTERNS_HOME and gather them in a ``ConsistencyReport``."""

from __future__ import annotations

import platform
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from shared import settings
from shared.consistency.config import Thresholds, load_thresholds
from shared.consistency.drift import check_drift
from shared.consistency.export import check_exports, mobile_reports
from shared.consistency.features import check_features, load_records
from shared.consistency.report import CheckResult, ConsistencyReport, Finding
from shared.registry import ModelVersion, Registry

__all__ = ["CHECKS", "run_checks"]

CHECKS = ("features", "exports", "drift")


def run_checks(
    checks: Sequence[str] = CHECKS,
    *,
    patterns: Sequence[str] | None = None,
    version: str | None = None,
    thresholds: Thresholds | None = None,
    registry: Registry | None = None,
    reports: Sequence[Path] | None = None,
    scores_files: Sequence[Path] = (),
    recompute_predictions: bool = True,
    strict: bool = False,
    progress: Callable[[str], None] = lambda _: None,
) -> ConsistencyReport:
    """The checks named in ``checks``. ``reports`` defaults to the mobile parity reports found.

    The model is ``version``, else the version most of the logged traffic was served by, else the
    registry's latest.
    """
    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; choose from {CHECKS}")
    limits = thresholds or load_thresholds()
    registry = registry or Registry()
    needs_logs = "features" in checks or "drift" in checks
    progress("reading prediction logs")
    records = load_records(patterns, version) if needs_logs else []
    model = _model(registry, version, records)
    report = ConsistencyReport(
        strict=strict,
        context={
            "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
            "model_version": model.version if model else None,
            "patterns": sorted({str(r.get("pattern")) for r in records}) or list(patterns or []),
            "records": len(records),
            "thresholds": limits.source,
            "platform": platform.system(),
        },
    )
    if "features" in checks:
        progress("features: recomputing logged examples offline")
        report.checks.append(
            check_features(
                records, thresholds=limits, registry=registry, recompute_predictions=recompute_predictions
            )
        )
    if "exports" in checks:
        progress("exports: comparing artifacts on held-out data")
        discovered = reports is None  # an explicit empty list means: no mobile comparison wanted
        if reports is None:
            reports = mobile_reports()
        result = check_exports(
            model, registry=registry, reports=reports, scores_files=scores_files, thresholds=limits
        )
        if model is not None:
            _suffix(result, "sklearn vs onnx", model.version)
        # Every other version that served logged traffic gets its own sklearn-vs-ONNX row.
        for other in _served_versions(registry, records, exclude=model):
            extra = check_exports(other, registry=registry, thresholds=limits)
            _suffix(extra, "sklearn vs onnx", other.version)
            result.findings += extra.findings
            result.plot_data |= extra.plot_data
            result.notes += extra.notes
        if discovered and not reports and not scores_files:
            where = settings.home() / "mobile" / "exports" / "<version>" / "export.json"
            reason = f"no mobile export parity report at {where} (`mlpatterns mobile export` writes it)"
            result.findings.append(Finding("tensorflow vs mobile exports", "not_run", {}, reason))
        report.checks.append(result)
    if "drift" in checks:
        progress("drift: training window vs serving logs")
        report.checks.append(check_drift(records, model, registry=registry, thresholds=limits))
    return report


def _suffix(result: CheckResult, name: str, version: str) -> None:
    for finding in result.findings:
        if finding.name == name:
            finding.name = f"{name} ({version})"
    if name in result.plot_data:
        result.plot_data[f"{name} ({version})"] = result.plot_data.pop(name)


def _served_versions(
    registry: Registry, records: Sequence[dict[str, object]], exclude: ModelVersion | None
) -> list[ModelVersion]:
    names = sorted({str(r.get("model_version")) for r in records} - {exclude.version if exclude else ""})
    found = []
    for name in names:
        try:
            found.append(registry.get(name))
        except KeyError:
            continue
    return found


def _model(
    registry: Registry, version: str | None, records: Sequence[dict[str, object]]
) -> ModelVersion | None:
    if version:
        return registry.get(version)
    served = Counter(str(r.get("model_version")) for r in records)
    for name, _ in served.most_common():
        try:
            return registry.get(name)
        except KeyError:
            continue
    try:
        return registry.latest()
    except KeyError:
        return None
