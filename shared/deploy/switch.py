"""The switch: the one thing each pattern implements, with its own mechanism.

REST flips an nginx upstream, batch moves a pointer row, streaming moves a consumer group through a
compacted control topic, mobile rewrites a manifest's rollout percentage. The ``Deployer`` only
ever talks to those mechanisms through the hooks below, and it records the durable truth itself, so
a Switch holds no deployment state of its own beyond what its medium needs.

``InProcessSwitch`` is the reference implementation: two in-process predictors and a routing dict.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from shared.deploy.metrics import p99
from shared.deploy.state import Slot, SlotState, TargetState

__all__ = ["BakeMetrics", "InProcessSwitch", "Predictor", "Switch"]

#: Maps a float32 feature matrix to one probability per row.
Predictor = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BakeMetrics:
    """What a slot served since the last ``route`` call (the current traffic step)."""

    requests: int = 0
    errors: int = 0
    p99_ms: float = 0.0
    predictions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


class Switch(ABC):
    """A pattern's blue-green mechanism. Hooks must be idempotent: recovery may repeat them."""

    #: True when ``route`` accepts fractional weights (canary); False means all-or-nothing.
    supports_weights: ClassVar[bool] = False
    #: True when ``shadow`` can mirror live traffic to a slot and ``shadow_pairs`` reports it.
    supports_shadow: ClassVar[bool] = False

    @abstractmethod
    def stage(self, slot: Slot, version: str) -> None:
        """Load ``version`` into ``slot`` without sending it any traffic."""

    @abstractmethod
    def ready(self, slot: Slot) -> bool:
        """True once the slot's model is loaded and answering."""

    @abstractmethod
    def predict(self, slot: Slot, X: np.ndarray) -> np.ndarray:
        """Probabilities for ``X`` computed by the deployed slot itself (not a local copy)."""

    @abstractmethod
    def route(self, weights: Mapping[Slot, float]) -> None:
        """Atomically send each slot its share of traffic (``{}`` = none); resets ``observe`` windows."""

    @abstractmethod
    def observe(self, slot: Slot) -> BakeMetrics:
        """Requests, errors, p99 latency and predictions of ``slot`` since the last ``route``."""

    def shadow(self, slot: Slot | None) -> None:  # noqa: B027 - optional hook
        """Start mirroring live traffic to ``slot`` (None stops mirroring)."""

    def shadow_pairs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(live scores, shadow scores) for the same requests since ``shadow`` started, if supported."""
        return None

    def retire(self, slot: Slot) -> None:  # noqa: B027 - optional hook
        """Unload whatever ``slot`` holds; it receives no traffic at this point."""

    def attach(self, state: TargetState) -> None:  # noqa: B027 - optional hook
        """Re-create the medium from durable state after a restart (e.g. reload in-process slots)."""


class _Window:
    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.predictions: list[float] = []


class InProcessSwitch(Switch):
    """Reference switch: two in-process predictors and a routing dict; ``serve`` is the traffic."""

    supports_weights = True
    supports_shadow = True

    def __init__(self, loader: Callable[[str], Predictor], seed: int = 0) -> None:
        self._loader = loader
        self._models: dict[Slot, Predictor] = {}
        self.versions: dict[Slot, str] = {}
        self.weights: dict[Slot, float] = {}
        self._windows: dict[Slot, _Window] = {s: _Window() for s in Slot}
        self._mirror: Slot | None = None
        self._pairs: tuple[list[float], list[float]] = ([], [])
        self._rng = np.random.default_rng(seed)

    def stage(self, slot: Slot, version: str) -> None:
        self._models[slot] = self._loader(version)
        self.versions[slot] = version
        self._windows[slot] = _Window()

    def ready(self, slot: Slot) -> bool:
        return slot in self._models

    def predict(self, slot: Slot, X: np.ndarray) -> np.ndarray:
        if slot not in self._models:
            raise RuntimeError(f"slot {slot} holds no model")
        return np.asarray(self._models[slot](np.asarray(X, dtype=np.float32)), dtype=np.float64).ravel()

    def route(self, weights: Mapping[Slot, float]) -> None:
        for slot, weight in weights.items():
            if weight > 0 and slot not in self._models:
                raise RuntimeError(f"cannot route to empty slot {slot}")
        self.weights = {Slot(s): float(w) for s, w in weights.items() if w > 0}
        self._windows = {s: _Window() for s in Slot}

    def observe(self, slot: Slot) -> BakeMetrics:
        w = self._windows[slot]
        return BakeMetrics(w.requests, w.errors, p99(w.latencies), np.asarray(w.predictions))

    def shadow(self, slot: Slot | None) -> None:
        self._mirror = slot
        self._pairs = ([], [])

    def shadow_pairs(self) -> tuple[np.ndarray, np.ndarray] | None:
        return np.asarray(self._pairs[0]), np.asarray(self._pairs[1])

    def retire(self, slot: Slot) -> None:
        self._models.pop(slot, None)
        self.versions.pop(slot, None)

    def attach(self, state: TargetState) -> None:
        for slot, info in state.slots.items():
            keep = info.state not in (SlotState.EMPTY, SlotState.RETIRED)
            if keep and info.version and self.versions.get(slot) != info.version:
                self.stage(slot, info.version)

    def serve(self, X: np.ndarray) -> np.ndarray:
        """Answer each row as one request routed by weight; NaN marks a failed request.

        Rows sent to one slot are answered in one call (each charged that call's latency); if the
        call fails they are retried one by one so that only the failing requests count as errors.
        """
        X = np.asarray(X, dtype=np.float32)
        out = np.full(len(X), np.nan)
        if not self.weights:
            raise RuntimeError("no slot receives traffic")
        slots = list(self.weights)
        probs = np.array([self.weights[s] for s in slots])
        picks = self._rng.choice(len(slots), size=len(X), p=probs / probs.sum())
        for i, slot in enumerate(slots):
            rows = np.flatnonzero(picks == i)
            if rows.size:
                out[rows] = self._answer(slot, X[rows])
                self._mirror_to(slot, X[rows], out[rows])
        return out

    def _answer(self, slot: Slot, X: np.ndarray) -> np.ndarray:
        window = self._windows[slot]
        start = time.perf_counter()
        try:
            scores = self.predict(slot, X)
        except Exception:
            scores = np.array([self._one(slot, X[j : j + 1]) for j in range(len(X))])
        else:
            window.latencies.extend([(time.perf_counter() - start) * 1000.0] * len(X))
            window.requests += len(X)
            window.predictions.extend(scores.tolist())
        return scores

    def _mirror_to(self, served_by: Slot, X: np.ndarray, scores: np.ndarray) -> None:
        mirror = self._mirror
        if mirror is None or mirror == served_by:
            return
        rows = np.flatnonzero(np.isfinite(scores))
        try:
            shadow = self.predict(mirror, X[rows])
        except Exception:  # a failing shadow must never hurt live traffic: keep the rows it answers
            shadow = np.array([self._shadow_one(mirror, X[j : j + 1]) for j in rows])
        keep = np.isfinite(shadow)
        self._pairs[0].extend(scores[rows][keep].tolist())
        self._pairs[1].extend(shadow[keep].tolist())

    def _shadow_one(self, slot: Slot, row: np.ndarray) -> float:
        try:
            return float(self.predict(slot, row)[0])
        except Exception:
            return float("nan")

    def _one(self, slot: Slot, row: np.ndarray) -> float:
        window = self._windows[slot]
        window.requests += 1
        start = time.perf_counter()
        try:
            score = float(self.predict(slot, row)[0])
        except Exception:
            window.errors += 1
            return float("nan")
        window.latencies.append((time.perf_counter() - start) * 1000.0)
        window.predictions.append(score)
        return score
