"""Online executor: features for one request (or a micro-batch) from the state in an online store.

All store reads for a call go out as one batch (one Redis round trip): one (count, sum) per distinct
window and one "latest" read per distinct as-of lookup. The store aggregates next to the data (a Lua
script in Redis), so a request costs a few numbers on the wire, not the hundreds of events in its
24-hour windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from shared.features.definitions import AsOfFeature, FeatureSet, RowFeature, WindowFeature
from shared.features.stores import LatestQuery, OnlineStore, WindowQuery

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
        self._lookups = [f for f in fs.features if isinstance(f, AsOfFeature | WindowFeature)]
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
        # Requests of a micro-batch share carriers, origins and often times: ask each distinct
        # window and as-of lookup once. The store returns (count, sum) per window, not the events.
        keys = {(f.source, f.key): [str(_field(r, f.key)) for r in requests] for f in self._lookups}
        windows: dict[WindowQuery, int] = {}
        latest: dict[LatestQuery, int] = {}
        slot: dict[str, list[int]] = {}  # feature -> per request, its answer's index in the reply
        for lookup in self._lookups:
            column = self._value_index[lookup.name]
            values = keys[(lookup.source, lookup.key)]
            src, key = lookup.source, lookup.key
            if isinstance(lookup, WindowFeature):
                w = lookup.window_seconds
                slot[lookup.name] = [
                    windows.setdefault(WindowQuery(src, key, values[i], t[i] - w, t[i], column), len(windows))
                    for i in range(n)
                ]
            else:
                slot[lookup.name] = [
                    latest.setdefault(LatestQuery(src, key, values[i], t[i]), len(latest)) for i in range(n)
                ]
        aggregates, latest_rows = self.store.read(list(windows), list(latest))
        for j, f in enumerate(fs.features):
            if isinstance(f, RowFeature):
                out[:, j] = np.asarray(f.fn(columns), dtype=np.float64)
                continue
            column = self._value_index[f.name]
            for i, k in enumerate(slot[f.name]):
                if isinstance(f, WindowFeature):
                    count, total = aggregates[k]
                    out[i, j] = float(count) if f.agg == "count" else (total / count if count else math.nan)
                else:
                    row = latest_rows[k]
                    fresh = row is not None and t[i] - row[0] <= f.ttl_seconds
                    out[i, j] = row[1][column] if fresh and row is not None else math.nan
        return out


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
