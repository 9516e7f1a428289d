"""Structured results of the consistency checks, a terminal table and a JSON file.

Each check returns a ``CheckResult`` made of ``Finding`` rows (one per feature or per artifact pair).
A row is ``pass``, ``fail``, ``warn`` (shown, never gates) or ``not_run`` (with the reason: a check
that could not run says so instead of passing quietly). A ``ConsistencyReport`` gathers the checks.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["CheckResult", "ConsistencyReport", "Finding", "Status"]

Status = Literal["pass", "fail", "warn", "not_run"]

_COLOURS = {"pass": "\x1b[32m", "fail": "\x1b[31m", "warn": "\x1b[33m", "not_run": "\x1b[33m"}
_RESET = "\x1b[0m"


@dataclass
class Finding:
    """One row of a check: a feature or an artifact pair, its metrics and its verdict."""

    name: str
    status: Status
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "metrics": {k: _json_value(v) for k, v in self.metrics.items()},
            "message": self.message,
            "examples": [{k: _json_value(v) for k, v in e.items()} for e in self.examples],
        }


@dataclass
class CheckResult:
    """The outcome of one check (``features``, ``exports`` or ``drift``)."""

    check: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: set when the whole check could not run (no logs, no model, ...)
    not_run_reason: str | None = None
    #: arrays for the HTML plots; never written to JSON
    plot_data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def status(self) -> Status:
        if self.not_run_reason is not None:
            return "not_run"
        if any(f.status == "fail" for f in self.findings):
            return "fail"
        return "pass"

    @property
    def passed(self) -> bool:
        """No failing row. A check that did not run has not failed (see ``ConsistencyReport.strict``)."""
        return self.status != "fail"

    @property
    def flagged(self) -> list[str]:
        """Names of the failing rows, in report order."""
        return [f.name for f in self.findings if f.status == "fail"]

    def finding(self, name: str) -> Finding:
        for f in self.findings:
            if f.name == name:
                return f
        raise KeyError(f"{self.check} has no row {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "status": self.status,
            "passed": self.passed,
            "not_run_reason": self.not_run_reason,
            "flagged": self.flagged,
            "notes": self.notes,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class ConsistencyReport:
    """Every check that ran; ``passed`` is the CI gate."""

    checks: list[CheckResult] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    #: when true, a check or a row that could not run fails the gate as well
    strict: bool = False
    #: rows (by a part of their name, e.g. "coreml") a strict gate accepts unverified, on purpose
    accept_unverified: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        if self.strict:
            skipped = [f for c in self.checks for f in c.findings if f.status == "not_run"]
            unaccepted = [f for f in skipped if not any(a in f.name for a in self.accept_unverified)]
            return not unaccepted and all(c.status == "pass" for c in self.checks)
        return all(c.status != "fail" for c in self.checks)

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.check == name:
                return c
        raise KeyError(f"the report has no {name!r} check")

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "strict": self.strict,
            "accept_unverified": list(self.accept_unverified),
            "context": self.context,
            "checks": [c.to_dict() for c in self.checks],
        }

    def write_json(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    def write_html(self, path: Path) -> Path:
        from shared.consistency.html import render_html

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(self), encoding="utf-8")
        return path

    def summary(self, colour: bool = True) -> str:
        """A terminal table: one line per row of every check, coloured by status."""
        lines: list[str] = []
        for c in self.checks:
            lines.append(_paint(f"== {c.check}: {c.status.upper()}", c.status, colour))
            if c.not_run_reason:
                lines.append(f"   not run: {c.not_run_reason}")
            width = max((len(f.name) for f in c.findings), default=10)
            for f in c.findings:
                metrics = "  ".join(f"{k}={_short(v)}" for k, v in list(f.metrics.items())[:5])
                status = _paint(f"{f.status:<7}", f.status, colour)
                lines.append(f"   {f.name:<{width}}  {status}  {metrics}  {f.message}".rstrip())
            lines.extend(f"   note: {n}" for n in c.notes)
        if self.strict and self.accept_unverified:
            lines.append(f"accepted unverified (strict): rows naming {', '.join(self.accept_unverified)}")
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(_paint(f"consistency gate: {verdict}", "pass" if self.passed else "fail", colour))
        return "\n".join(lines)


def _paint(text: str, status: str, colour: bool) -> str:
    return f"{_COLOURS[status]}{text}{_RESET}" if colour else text


def _short(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
