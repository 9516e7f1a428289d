"""Prometheus metrics of one serving process, plus the bake window a blue-green switch reads.

Label children are created once per endpoint and cached, so recording a request costs two counter
increments and one histogram observation (no label lookup, no middleware). Each app gets its own
``CollectorRegistry`` so several apps can live in one process (tests) without clashing.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "BakeWindow", "ServiceMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024)


class BakeWindow:
    """Requests, errors, latencies and predictions of the scoring endpoints since the last reset.

    Bounded (the newest ``keep`` latencies and predictions), so it costs constant memory however
    long nobody resets it.
    """

    def __init__(self, keep: int = 100_000) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.requests = 0
            self.errors = 0
            self._latencies: deque[float] = deque(maxlen=self._keep)
            self._predictions: deque[float] = deque(maxlen=self._keep)

    def record(self, seconds: float, error: bool, predictions: list[float] | None = None) -> None:
        # Appends and increments are atomic enough under the GIL for counters that only need to be
        # approximately consistent with each other while a reader takes a snapshot.
        self.requests += 1
        if error:
            self.errors += 1
        else:
            self._latencies.append(seconds)
        if predictions:
            self._predictions.extend(predictions)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            latencies = np.asarray(self._latencies, dtype=np.float64)
            return {
                "requests": self.requests,
                "errors": self.errors,
                "p99_ms": float(np.percentile(latencies, 99) * 1000.0) if len(latencies) else 0.0,
                "predictions": list(self._predictions),
            }


class ServiceMetrics:
    """Counters and histograms labelled by endpoint and model version (and the slot, as info)."""

    def __init__(
        self, model_version: str, slot: str | None, registry: CollectorRegistry | None = None
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.model_version = model_version
        labels = ["endpoint", "model_version"]
        self._requests = Counter(
            "mlpatterns_rest_requests", "Requests served, by endpoint.", labels, registry=self.registry
        )
        self._errors = Counter(
            "mlpatterns_rest_errors",
            "Requests answered with a 4xx or 5xx status.",
            [*labels, "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "mlpatterns_rest_latency_seconds",
            "Time from request body received to response ready.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._rows = Counter(
            "mlpatterns_rest_predictions",
            "Flights scored (a batch counts each flight).",
            labels,
            registry=self.registry,
        )
        self._batch = Histogram(
            "mlpatterns_rest_batch_rows",
            "Flights per scoring batch (concurrent requests are scored together).",
            ["model_version"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        ).labels(model_version)
        info = Gauge(
            "mlpatterns_rest_model_info",
            "The model this process serves (value 1).",
            ["model_version", "slot"],
            registry=self.registry,
        )
        info.labels(model_version, slot or "").set(1)
        self._children: dict[str, tuple[Any, Any, Any]] = {}
        self.window = BakeWindow()

    def _child(self, endpoint: str) -> tuple[Any, Any, Any]:
        child = self._children.get(endpoint)
        if child is None:
            v = self.model_version
            child = (
                self._requests.labels(endpoint, v),
                self._latency.labels(endpoint, v),
                self._rows.labels(endpoint, v),
            )
            self._children[endpoint] = child
        return child

    def observe(
        self, endpoint: str, seconds: float, status: int = 200, predictions: list[float] | None = None
    ) -> None:
        requests, latency, rows = self._child(endpoint)
        requests.inc()
        latency.observe(seconds)
        if status >= 400:
            self._errors.labels(endpoint, self.model_version, str(status)).inc()
        if predictions:
            rows.inc(len(predictions))

    def observe_scoring(self, seconds: float, status: int, predictions: list[float] | None) -> None:
        """Also feed the bake window (only scoring endpoints count for blue-green guardrails).

        Client errors (4xx) are the caller's fault, not the model's: they do not count as errors.
        """
        self.window.record(seconds, status >= 500, predictions)

    def batch(self, rows: int) -> None:
        self._batch.observe(rows)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
