"""The ``inprocess`` demo target: a reference switch with synthetic models and synthetic traffic.

It lets ``mlpatterns deploy/rollback/status inprocess`` run without any server or trained model.
A version name picks a deterministic logistic model; suffixes inject faults to show the gates:

- ``v2-broken``: the served model differs from what was recorded at training (golden set fails)
- ``v2-errors``: requests with an extreme first feature fail (about 5 %; none in the golden set),
  so only real traffic shows it: the error-rate guardrail fails during the bake
- ``v2-newfeatures``: trained on other feature definitions (refused unless ``--force``)
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np

from shared.deploy.deployer import Target
from shared.deploy.gates import Candidate, GuardrailGate, default_gates
from shared.deploy.state import Slot
from shared.deploy.switch import BakeMetrics, InProcessSwitch, Predictor

__all__ = ["DEMO_FINGERPRINT", "DemoSwitch", "demo_model", "demo_predictor", "demo_target"]

DEMO_FINGERPRINT = "demo-features-0001"
_N_FEATURES = 4
_ERROR_ABOVE = 1.6  # P(N(0,1) > 1.6) ~ 5 %


def _weights(version: str) -> np.ndarray:
    base = version.split("-", 1)[0]
    seed = int.from_bytes(hashlib.sha256(base.encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    # Versions of one model family differ a little, like successive retrains on new months.
    return np.array([0.8, -0.5, 0.3, 0.1, -0.2]) + rng.normal(0.0, 0.005, _N_FEATURES + 1)


def demo_predictor(version: str) -> Predictor:
    """The model that actually gets served for ``version`` (faults included)."""
    w = _weights(version)
    offset = 0.5 if version.endswith("-broken") else 0.0
    failing = version.endswith("-errors")

    def predict(X: np.ndarray) -> np.ndarray:
        z = np.asarray(X, dtype=np.float64) @ w[:-1] + w[-1] + offset
        if failing and np.any(np.asarray(X)[:, 0] > _ERROR_ABOVE):
            raise RuntimeError("injected failure")
        return 1.0 / (1.0 + np.exp(-z))

    return predict


def demo_model(version: str) -> Candidate:
    """What the registry would hold for ``version``: its fingerprint and golden set."""
    X = np.clip(np.random.default_rng(0).normal(size=(64, _N_FEATURES)), -1.5, 1.5).astype(np.float32)
    w = _weights(version)
    expected = 1.0 / (1.0 + np.exp(-(X.astype(np.float64) @ w[:-1] + w[-1])))
    fingerprint = "demo-features-0002" if version.endswith("-newfeatures") else DEMO_FINGERPRINT
    return Candidate(version, fingerprint, X, expected)


class DemoSwitch(InProcessSwitch):
    """Sends a burst of synthetic requests whenever the deployer looks, so there is traffic to judge."""

    burst: ClassVar[int] = 200

    def __init__(self, seed: int = 0) -> None:
        super().__init__(demo_predictor, seed=seed)
        self._traffic = np.random.default_rng(seed + 1)

    def _pump(self) -> None:
        if self.weights:
            self.serve(self._traffic.normal(size=(self.burst, _N_FEATURES)).astype(np.float32))

    def observe(self, slot: Slot) -> BakeMetrics:
        self._pump()
        return super().observe(slot)

    def shadow_pairs(self) -> tuple[np.ndarray, np.ndarray] | None:
        self._pump()
        return super().shadow_pairs()


def demo_target() -> Target:
    """Default gates, except PSI is judged from 200 predictions a side (the demo's bursts are small)."""
    gates = [*(g for g in default_gates() if g.phase != "bake"), GuardrailGate(min_psi_samples=200)]
    return Target("inprocess", DemoSwitch(), DEMO_FINGERPRINT, demo_model, gates)
