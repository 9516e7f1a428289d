"""Gates: checks a candidate slot must pass before and while it takes traffic.

Each gate runs in one phase: ``verify`` (no traffic: readiness, golden set), ``shadow`` (mirrored
traffic compared with live) or ``bake`` (guardrails evaluated repeatedly while the candidate serves
a share of real traffic). Gates see only plain data and the Switch hooks, never a pattern.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np

from shared.deploy.metrics import agreement_rate, psi
from shared.deploy.state import GateResult, Slot
from shared.deploy.switch import Switch

__all__ = [
    "Candidate",
    "Gate",
    "GateContext",
    "GoldenSetGate",
    "GuardrailGate",
    "ModelCard",
    "Phase",
    "ReadinessGate",
    "ShadowGate",
    "check_fingerprint",
    "default_gates",
    "registry_cards",
]

Phase = Literal["verify", "shadow", "bake"]


class ModelCard(Protocol):
    """What a deployment needs to know about a model version.

    ``decision_threshold`` is the score from which the version's services say yes ("delayed"): the
    shadow gate compares the decisions each version would really take. A ``shared.registry`` entry
    holds all of it but not in this shape (its golden set comes from ``golden_set()``):
    ``registry_cards`` turns one into a ``Candidate``.
    """

    @property
    def version(self) -> str: ...
    @property
    def feature_fingerprint(self) -> str: ...
    @property
    def golden_inputs(self) -> np.ndarray: ...
    @property
    def golden_outputs(self) -> np.ndarray: ...
    @property
    def decision_threshold(self) -> float: ...


@dataclass(frozen=True)
class Candidate:
    """A plain ModelCard, for tests, demos and patterns that do not use the registry."""

    version: str
    feature_fingerprint: str
    golden_inputs: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    golden_outputs: np.ndarray = field(default_factory=lambda: np.empty(0))
    decision_threshold: float = 0.5


class _Versions(Protocol):  # shared.registry.Registry, without importing it here
    def get(self, version: str) -> Any: ...


def registry_cards(registry: _Versions) -> Callable[[str], Candidate]:
    """A ``Target.models`` lookup: version -> the registry entry's fingerprint, golden set and cut.

    An unknown version raises the registry's ``UnknownVersion`` (a ``KeyError``) at lookup.
    """

    def card(version: str) -> Candidate:
        model = registry.get(version)
        inputs, outputs = model.golden_set()
        return Candidate(model.version, model.feature_fingerprint, inputs, outputs, model.decision_threshold)

    return card


@dataclass
class GateContext:
    """Everything a gate may look at; ``reference`` holds live predictions from before the switch.

    ``live_model`` is the card of the version serving now (None on a first deployment, or when the
    deployer has no lookup for versions).
    """

    switch: Switch
    candidate: Slot
    live: Slot | None
    model: ModelCard
    phase: str
    reference: np.ndarray | None = None
    live_model: ModelCard | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class Gate(ABC):
    """A check with a name and a phase; ``check`` returns a result instead of raising."""

    name: ClassVar[str]
    phase: ClassVar[Phase]

    @abstractmethod
    def check(self, ctx: GateContext) -> GateResult: ...

    def _result(
        self,
        ctx: GateContext,
        passed: bool,
        detail: str,
        *,
        skipped: bool = False,
        metrics: Mapping[str, float] | None = None,
        **m: float,
    ) -> GateResult:
        values = {**(metrics or {}), **m}
        return GateResult(self.name, passed, detail, phase=ctx.phase, skipped=skipped, metrics=values)


def check_fingerprint(candidate: str, running: str, force: bool = False) -> GateResult:
    """The model must have been trained on the feature definitions that are running now."""
    if candidate == running:
        return GateResult("fingerprint", True, f"features match ({running[:12]})", phase="precheck")
    detail = f"model features {candidate} != running features {running}"
    if force:
        return GateResult("fingerprint", True, detail + " (forced)", phase="precheck")
    return GateResult("fingerprint", False, detail + " (use --force to deploy anyway)", phase="precheck")


@dataclass
class ReadinessGate(Gate):
    """The slot reports ready (model loaded and answering) within ``timeout_s``."""

    timeout_s: float = 60.0
    poll_s: float = 0.5
    name: ClassVar[str] = "readiness"
    phase: ClassVar[Phase] = "verify"

    def check(self, ctx: GateContext) -> GateResult:
        start = ctx.clock()
        while True:
            try:
                if ctx.switch.ready(ctx.candidate):
                    return self._result(ctx, True, f"ready after {ctx.clock() - start:.1f}s")
            except Exception as exc:  # a probe that errors is simply not ready yet
                last = f"{type(exc).__name__}: {exc}"
            else:
                last = "not ready"
            if ctx.clock() - start >= self.timeout_s:
                return self._result(ctx, False, f"{last} after {self.timeout_s:.0f}s")
            ctx.sleep(self.poll_s)


@dataclass
class GoldenSetGate(Gate):
    """Predictions of the deployed slot on the golden inputs match the registry's within ``atol``.

    ``inputs``/``expected`` default to the model card's golden set recorded at training time.
    """

    atol: float = 1e-4
    max_mismatch_rate: float = 0.0
    inputs: np.ndarray | None = None
    expected: np.ndarray | None = None
    name: ClassVar[str] = "golden_set"
    phase: ClassVar[Phase] = "verify"

    def check(self, ctx: GateContext) -> GateResult:
        X = ctx.model.golden_inputs if self.inputs is None else self.inputs
        want = np.asarray(ctx.model.golden_outputs if self.expected is None else self.expected, np.float64)
        if len(X) == 0:
            return self._result(ctx, False, "no golden set recorded for this version")
        try:
            got = ctx.switch.predict(ctx.candidate, np.asarray(X, dtype=np.float32))
        except Exception as exc:
            return self._result(ctx, False, f"predict failed: {type(exc).__name__}: {exc}")
        got = np.asarray(got, dtype=np.float64).ravel()
        if got.shape != want.ravel().shape:
            return self._result(ctx, False, f"{got.size} predictions for {want.size} golden rows")
        diff = np.abs(got - want.ravel())
        diff[~np.isfinite(diff)] = np.inf
        rate = float(np.mean(diff > self.atol))
        worst = float(diff.max())
        passed = rate <= self.max_mismatch_rate
        detail = f"{rate:.1%} of {got.size} rows off by > {self.atol:g} (max diff {worst:.2g})"
        return self._result(ctx, passed, detail, mismatch_rate=rate, max_abs_diff=worst)


@dataclass
class ShadowGate(Gate):
    """Mirrored live traffic: the candidate agrees with live on enough decisions and scores.

    A decision is a score at or above a version's own ``decision_threshold`` (``threshold`` set:
    that one cut for both), so a candidate whose scores look like live's but whose cut is wrong is
    caught. ``min_agreement`` 0.85 was measured on December's 28,135 flights against v1 (months
    1-9): retrains on other months, seeds or hyper-parameters agree on 87-97 % of decisions; a
    constant score, shuffled scores, noise of sd 0.1 or a version cut at 0.5 agree on 46-83 %.
    """

    min_pairs: int = 200
    min_agreement: float = 0.85
    max_mean_abs_diff: float = 0.05
    threshold: float | None = None
    timeout_s: float = 300.0
    poll_s: float = 1.0
    name: ClassVar[str] = "shadow"
    phase: ClassVar[Phase] = "shadow"

    def check(self, ctx: GateContext) -> GateResult:
        if ctx.live is None:
            return self._result(ctx, True, "skipped: no live version to compare with", skipped=True)
        if not ctx.switch.supports_shadow:
            return self._result(ctx, True, "skipped: this medium cannot mirror traffic", skipped=True)
        start = ctx.clock()
        ctx.switch.shadow(ctx.candidate)
        try:
            while True:
                pairs = ctx.switch.shadow_pairs()
                n = 0 if pairs is None else len(pairs[0])
                if n >= self.min_pairs or ctx.clock() - start >= self.timeout_s:
                    break
                ctx.sleep(self.poll_s)
        finally:
            ctx.switch.shadow(None)
        if pairs is None or n < self.min_pairs:
            return self._result(ctx, False, f"only {n} mirrored requests in {self.timeout_s:.0f}s", pairs=n)
        live, cand = pairs
        live_cut, cand_cut = self._cuts(ctx)
        agree = agreement_rate(live, cand, live_cut, cand_cut)
        mad = float(np.mean(np.abs(np.asarray(live) - np.asarray(cand))))
        passed = agree >= self.min_agreement and mad <= self.max_mean_abs_diff
        detail = (
            f"agreement {agree:.1%} (min {self.min_agreement:.0%}, cuts {live_cut:.3f} live "
            f"{cand_cut:.3f} new), mean |diff| {mad:.3f} (max {self.max_mean_abs_diff}) over {n} requests"
        )
        metrics = {"live_threshold": live_cut, "candidate_threshold": cand_cut}
        return self._result(ctx, passed, detail, metrics=metrics, agreement=agree, mean_abs_diff=mad, pairs=n)

    def _cuts(self, ctx: GateContext) -> tuple[float, float]:
        if self.threshold is not None:
            return self.threshold, self.threshold
        cand = float(ctx.model.decision_threshold)
        # Without the live version's card, assume it shares the candidate's cut.
        return (cand if ctx.live_model is None else float(ctx.live_model.decision_threshold)), cand


@dataclass
class GuardrailGate(Gate):
    """Bake guardrails on the candidate's live traffic: error rate, p99 latency, prediction PSI.

    Rates are judged once the step has ``min_requests``; PSI compares the candidate's predictions
    with the live version's (served alongside it, or captured before the switch) once both have
    ``min_psi_samples``: with 10 bins, two samples of one distribution already score about
    ``9 * (1/n + 1/m)``, so small samples would trip the threshold by chance.
    """

    max_error_rate: float = 0.01
    max_p99_ms: float = 500.0
    max_psi: float = 0.25
    min_requests: int = 100
    min_psi_samples: int = 500
    psi_bins: int = 10
    name: ClassVar[str] = "guardrails"
    phase: ClassVar[Phase] = "bake"

    def check(self, ctx: GateContext) -> GateResult:
        m = ctx.switch.observe(ctx.candidate)
        if m.requests < self.min_requests:
            return self._result(
                ctx,
                True,
                f"{m.requests} requests, need {self.min_requests} to judge",
                skipped=True,
                requests=m.requests,
            )
        values: dict[str, float] = {"requests": m.requests, "error_rate": m.error_rate, "p99_ms": m.p99_ms}
        failures = []
        if m.error_rate > self.max_error_rate:
            failures.append(f"error rate {m.error_rate:.2%} > {self.max_error_rate:.2%}")
        if m.p99_ms > self.max_p99_ms:
            failures.append(f"p99 {m.p99_ms:.1f}ms > {self.max_p99_ms:.0f}ms")
        reference = ctx.reference
        if ctx.live is not None and ctx.live != ctx.candidate:
            concurrent = ctx.switch.observe(ctx.live).predictions
            if len(concurrent) >= self.min_psi_samples:
                reference = concurrent
        n_min = self.min_psi_samples
        shift = f"psi not judged (needs {n_min} predictions on each side)"
        if reference is not None and len(reference) >= n_min and len(m.predictions) >= n_min:
            values["psi"] = psi(reference, m.predictions, bins=self.psi_bins)
            shift = f"psi {values['psi']:.3f}"
            if values["psi"] > self.max_psi:
                failures.append(f"psi {values['psi']:.3f} > {self.max_psi}")
        detail = "; ".join(failures) or (
            f"{m.requests} requests, error rate {m.error_rate:.2%}, p99 {m.p99_ms:.2f}ms, {shift}"
        )
        return self._result(ctx, not failures, detail, metrics=values)


def default_gates() -> list[Gate]:
    """Readiness, golden set, shadow comparison and bake guardrails with their default thresholds."""
    return [ReadinessGate(), GoldenSetGate(), ShadowGate(), GuardrailGate()]
