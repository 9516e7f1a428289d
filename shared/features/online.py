"""Online executor: features for one request (or a micro-batch) from the state in an online store.

All store reads for a call go out as one batch (one Redis round trip): one range read per distinct
(source, key, value) covering every request's longest window, one "latest" read per distinct
as-of lookup. The window aggregates are then cut from those ranges in Python, summing in time order.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.features.definitions import AsOfFeature, FeatureSet, RowFeature, WindowFeature
from shared.features.stores import LatestQuery, OnlineStore, RangeQuery

__all__ = ["OnlineExecutor", "RequestError"]


class RequestError(ValueError):
    """A request misses a field the feature set needs, or a field has the wrong type."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class OnlineExecutor:
    """Compute the feature vector of requests, reading event state from ``store``."""

    def __init__(self, feature_set: FeatureSet, store: OnlineStore) -> None:
        self.feature_set = feature_set
        self.store = store
        fs = feature_set
        self._row_inputs = sorted({c for f in fs.features if isinstance(f, RowFeature) for c in f.inputs})
        # (source, key) -> longest window; (source, key) pairs for as-of reads.
        self._ranges: dict[tuple[str, str], int] = {}
        self._latest: list[tuple[str, str]] = []
        for f in fs.features:
            if isinstance(f, WindowFeature):
                k = (f.source, f.key)
                self._ranges[k] = max(self._ranges.get(k, 0), f.window_seconds)
            elif isinstance(f, AsOfFeature) and (f.source, f.key) not in self._latest:
                self._latest.append((f.source, f.key))
        self._value_index = {
            f.name: fs.source(f.source).value_columns.index(f.value)
            for f in fs.features
            if isinstance(f, AsOfFeature | WindowFeature)
        }

    def compute(self, request: Mapping[str, Any]) -> dict[str, float]:
        """Feature name -> value for one request."""
        return dict(zip(self.feature_set.names, self.matrix([request])[0].tolist(), strict=True))

    def matrix(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """float64 matrix, one row per request, columns in feature-set order."""
        fs = self.feature_set
        n = len(requests)
        out = np.empty((n, len(fs.features)), dtype=np.float64)
        if n == 0:
            return out
        t = [_time(r, fs.request_time) for r in requests]
        columns = {c: np.asarray([_field(r, c) for r in requests]) for c in self._row_inputs}
        # Requests of a micro-batch share carriers and origins: read each (source, key, value) once,
        # over the union of the requests' windows, and cut every window from that one sorted range.
        keys = {k: [str(_field(r, k[1])) for r in requests] for k in [*self._ranges, *self._latest]}
        spans: dict[tuple[str, str, str], list[int]] = {}
        for (src, key), w in self._ranges.items():
            for i, value in enumerate(keys[(src, key)]):
                span = spans.setdefault((src, key, value), [t[i] - w, t[i]])
                span[0], span[1] = min(span[0], t[i] - w), max(span[1], t[i])
        latest = list(
            dict.fromkeys(
                LatestQuery(src, key, keys[(src, key)][i], t[i])
                for i in range(n)
                for src, key in self._latest
            )
        )
        range_rows, latest_rows = self.store.read(
            [RangeQuery(src, key, value, lo, hi) for (src, key, value), (lo, hi) in spans.items()], latest
        )
        # Per range read: its times and one list per value column, so each window is a slice sum.
        cut = {
            span: ([ts for ts, _ in rows], list(zip(*(v for _, v in rows), strict=True)) if rows else [])
            for span, rows in zip(spans, range_rows, strict=True)
        }
        found = dict(zip(latest, latest_rows, strict=True))
        for j, f in enumerate(fs.features):
            if isinstance(f, RowFeature):
                out[:, j] = np.asarray(f.fn(columns), dtype=np.float64)
                continue
            vi = self._value_index[f.name]
            values = keys[(f.source, f.key)]
            for i in range(n):
                if isinstance(f, WindowFeature):
                    times, cols = cut[(f.source, f.key, values[i])]
                    out[i, j] = _window(times, cols[vi] if cols else (), t[i] - f.window_seconds, t[i], f.agg)
                else:
                    row = found[LatestQuery(f.source, f.key, values[i], t[i])]
                    fresh = row is not None and t[i] - row[0] <= f.ttl_seconds
                    out[i, j] = row[1][vi] if fresh and row is not None else math.nan
        return out


def _window(times: list[int], values: Sequence[float], start: int, end: int, agg: str) -> float:
    """``agg`` over the events with time in [start, end) of a time-sorted range."""
    lo = bisect.bisect_left(times, start)
    hi = bisect.bisect_left(times, end)
    if agg == "count":
        return float(hi - lo)
    return sum(values[lo:hi]) / (hi - lo) if hi > lo else math.nan


def _field(request: Mapping[str, Any], name: str) -> Any:
    try:
        return request[name]
    except KeyError:
        raise RequestError(name, "field required") from None


def _time(request: Mapping[str, Any], name: str) -> int:
    value = _field(request, name)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise RequestError(name, f"expected epoch seconds (a number), got {type(value).__name__}")
    return int(value)
