"""Helpers for the deployment tests: a model family with injectable faults, a fake clock whose
``sleep`` sends real requests through the switch, and a Deployer on a SQLite file in tmp_path.

A plain module rather than conftest.py, imported as ``tests.shared.deploy.deploy_world``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import numpy as np

from shared.deploy import (
    Candidate,
    Deployer,
    GoldenSetGate,
    GuardrailGate,
    InProcessSwitch,
    ReadinessGate,
    ShadowGate,
    Slot,
    SQLiteStore,
    StateStore,
    Strategy,
    Switch,
)
from shared.deploy.gates import Gate

FP = "features-aaaa"
N_FEATURES = 4
_BASE = np.array([0.8, -0.5, 0.3, 0.1, -0.2])


@cache
@cache
def _weights(version: str) -> np.ndarray:
    # ``drift`` versions are a genuinely different model family: decisions and scores move a lot.
    base = np.array([-1.5, 1.2, 0.9, -0.4, 1.5]) if "drift" in version else _BASE
    seed = int.from_bytes(hashlib.sha256(version.encode()).digest()[:4], "little")
    return base + np.random.default_rng(seed).normal(0.0, 1e-4, N_FEATURES + 1)


def _clean(version: str, X: np.ndarray) -> np.ndarray:
    w = _weights(version)
    return 1.0 / (1.0 + np.exp(-(np.asarray(X, dtype=np.float64) @ w[:-1] + w[-1])))


def predictor(version: str) -> Callable[[np.ndarray], np.ndarray]:
    """What gets served. Tags: ``bad`` differs from its golden set; ``err`` fails requests whose first
    feature is > 1.5 (the golden set has none, like a bug only real traffic hits)."""

    def predict(X: np.ndarray) -> np.ndarray:
        if "err" in version and np.any(X[:, 0] > 1.5):  # about 7 % of live requests
            raise RuntimeError("injected failure")
        return _clean(version, X) + (0.3 if "bad" in version else 0.0)

    return predict


def model(version: str) -> Candidate:
    """What the registry recorded at training time; ``newfeat`` was trained on other features, and
    ``cut`` says "yes" from 0.8 instead of 0.5 (same scores, other decisions)."""
    X = np.clip(np.random.default_rng(0).normal(size=(32, N_FEATURES)), -1.5, 1.5).astype(np.float32)
    fp = "features-bbbb" if "newfeat" in version else FP
    return Candidate(version, fp, X, _clean(version, X), 0.8 if "cut" in version else 0.5)


class FakeClock:
    """Time advances only in ``sleep``, which also serves one batch of traffic (if any is routed)."""

    def __init__(self, switch: InProcessSwitch, batch: int = 500, seed: int = 1) -> None:
        self.t = 0.0
        self.switch = switch
        self.batch = batch
        self._rng = np.random.default_rng(seed)

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.01)
        self.traffic()

    def traffic(self) -> None:
        if self.switch.weights:
            self.switch.serve(self._rng.normal(size=(self.batch, N_FEATURES)).astype(np.float32))


def make_gates() -> list[Gate]:
    return [
        ReadinessGate(timeout_s=5, poll_s=1),
        GoldenSetGate(atol=1e-6),
        ShadowGate(min_pairs=50, timeout_s=10, poll_s=1),
        GuardrailGate(
            max_error_rate=0.02, max_p99_ms=1e9, max_psi=0.25, min_requests=20, min_psi_samples=300
        ),
    ]


CANARY = Strategy.canary((0.1, 0.5, 1.0), bake_s=2, poll_s=1)
ALL = Strategy.all_at_once(bake_s=2, poll_s=1)


class World:
    """One target ``t`` with its store file, switch, clock and deployer; ``reopen`` simulates a restart."""

    def __init__(
        self,
        path: Path,
        switch: InProcessSwitch | None = None,
        gates: list[Gate] | None = None,
        store: Callable[[], StateStore] | None = None,
    ) -> None:
        self.path = path
        self.gates = make_gates() if gates is None else gates
        self.switch = switch if switch is not None else InProcessSwitch(predictor)
        # SQLite without an fsync per commit (still atomic) unless another store is asked for
        self._open = store or (lambda: SQLiteStore(path, synchronous="NORMAL"))
        self.store: StateStore = self._open()
        self.clock = FakeClock(self.switch)
        self.deployer = self._deployer(self.switch, self.store)

    def _deployer(self, switch: Switch, store: StateStore) -> Deployer:
        clock = self.clock
        return Deployer("t", switch, store, FP, self.gates, clock.now, clock.sleep, models=model)

    def reopen(self, switch: InProcessSwitch | None = None) -> World:
        """A restart: fresh store connection, and a fresh switch unless the medium survived."""
        self.store.close()
        return World(self.path, switch, self.gates, self._open)

    def second_process(self) -> World:
        """Another process working on the same store and the same medium."""
        return World(self.path, self.switch, self.gates, self._open)

    def deploy(self, version: str, strategy: Strategy = ALL, force: bool = False):  # type: ignore[no-untyped-def]
        return self.deployer.deploy(model(version), strategy, force=force)

    def served_by(self) -> set[str]:
        """Which versions answer live traffic now (checked by comparing served scores)."""
        X = np.random.default_rng(7).normal(size=(64, N_FEATURES)).astype(np.float32)
        out = self.switch.serve(X)
        found = set()
        for version in set(self.switch.versions.values()):
            want = np.array([_try(predictor(version), X[i : i + 1]) for i in range(len(X))])
            if np.any(np.isclose(out, want, rtol=0, atol=1e-12)):
                found.add(version)
        return found


def _try(predict: Callable[[np.ndarray], np.ndarray], row: np.ndarray) -> float:
    try:
        return float(predict(row)[0])
    except RuntimeError:
        return float("nan")


class Crash(BaseException):
    """Stands for kill -9."""


class CrashingSwitch(InProcessSwitch):
    """Raises ``exc`` from the ``crash_at``-th hook call made by the deployer (traffic is not counted)."""

    def __init__(self, crash_at: int | None = None, exc: type[BaseException] = Crash) -> None:
        super().__init__(predictor)
        self.crash_at, self.exc = crash_at, exc
        self.calls: list[str] = []
        self._serving = False

    def _tick(self, name: str) -> None:
        if self._serving:
            return
        self.calls.append(name)
        if len(self.calls) == self.crash_at:
            raise self.exc(f"crash in {name} (call {self.crash_at})")

    def stage(self, slot: Slot, version: str) -> None:
        self._tick("stage")
        super().stage(slot, version)

    def ready(self, slot: Slot) -> bool:
        self._tick("ready")
        return super().ready(slot)

    def predict(self, slot: Slot, X: np.ndarray) -> np.ndarray:
        self._tick("predict")
        return super().predict(slot, X)

    def route(self, weights: Mapping[Slot, float]) -> None:
        self._tick("route")
        super().route(weights)

    def observe(self, slot: Slot):  # type: ignore[no-untyped-def]
        self._tick("observe")
        return super().observe(slot)

    def shadow(self, slot: Slot | None) -> None:
        self._tick("shadow")
        super().shadow(slot)

    def shadow_pairs(self):  # type: ignore[no-untyped-def]
        self._tick("shadow_pairs")
        return super().shadow_pairs()

    def retire(self, slot: Slot) -> None:
        self._tick("retire")
        super().retire(slot)

    def serve(self, X: np.ndarray) -> np.ndarray:
        self._serving = True
        try:
            return super().serve(X)
        finally:
            self._serving = False
