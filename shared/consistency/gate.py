"""The consistency checks as a blue-green deployment gate (``shared.deploy`` ``Gate``, phase verify).

    Deployer(..., gates=[*default_gates(), ConsistencyGate(checks=("exports",))])

Before a candidate takes traffic it must export faithfully (scikit-learn vs ONNX on held-out
months); with ``"features"`` / ``"drift"`` the recent serving logs of ``patterns`` are checked too.

A gate is strict by default: a check (or row) that could not run fails it, since "not verified" is
no reason to switch. Before a candidate serves it has no logs of its own, so ``features`` and
``drift`` cannot run in the verify phase: only ``exports`` is meaningful there, and asking for the
others fails with the reason unless you pass ``strict=False`` to accept them unverified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from shared.consistency.config import Thresholds
from shared.consistency.run import run_checks
from shared.deploy.gates import Gate, GateContext, Phase
from shared.deploy.state import GateResult
from shared.registry import Registry

__all__ = ["ConsistencyGate"]


@dataclass
class ConsistencyGate(Gate):
    """Passes when the selected consistency checks pass for the candidate's model version."""

    checks: Sequence[str] = ("exports",)
    patterns: Sequence[str] | None = None
    registry: Registry | None = None
    thresholds: Thresholds | None = None
    strict: bool = True
    name: ClassVar[str] = "consistency"
    phase: ClassVar[Phase] = "verify"

    def check(self, ctx: GateContext) -> GateResult:
        try:
            report = run_checks(
                self.checks,
                patterns=self.patterns,
                version=ctx.model.version,
                thresholds=self.thresholds,
                registry=self.registry,
                reports=[],
                strict=self.strict,
            )
        except KeyError as exc:  # the version is not in the registry: nothing to verify it against
            return self._result(ctx, False, str(exc.args[0]))
        flagged = [f"{c.check}: {', '.join(c.flagged)}" for c in report.checks if c.flagged]
        skipped = [f"{c.check} ({c.not_run_reason})" for c in report.checks if c.not_run_reason] + [
            f"{c.check}: {f.name}" for c in report.checks for f in c.findings if f.status == "not_run"
        ]
        if flagged:
            detail = "; ".join(flagged)
        elif report.passed:
            detail = "all consistency checks pass"
        else:
            detail = "not verified: a check that could not run fails a strict gate"
        if skipped:
            detail += f" (not run: {'; '.join(skipped)})"
        return self._result(
            ctx, report.passed, detail, failed_rows=float(sum(len(c.flagged) for c in report.checks))
        )
