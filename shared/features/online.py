"""Online executor: features for one request (or a micro-batch) from the state in an online store.

All store reads for a call go out as one batch (one Redis round trip): one (count, sum) per distinct
window and one "latest" read per distinct as-of lookup. The store aggregates next to the data (a Lua
script in Redis), so a request costs a few numbers on the wire, not the hundreds of events in its
24-hour windows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from shared.features.definitions import AsOfFeature, FeatureSet, RowFeature, WindowFeature
from shared.features.stores import Aggregate, LatestQuery, OnlineStore, Row, WindowQuery

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
        self._rows = [(j, f) for j, f in enumerate(fs.features) if isinstance(f, RowFeature)]
        # Features that ask the store the same question share it: the count and the mean of one
        # window are one (count, sum) query, and every weather field is one as-of query.
        self._windows: dict[tuple[str, str, int, int], list[tuple[int, str]]] = {}
        self._latest: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        for j, f in enumerate(fs.features):
            if isinstance(f, WindowFeature):
                column = fs.source(f.source).value_columns.index(f.value)
                self._windows.setdefault((f.source, f.key, f.window_seconds, column), []).append((j, f.agg))
            elif isinstance(f, AsOfFeature):
                column = fs.source(f.source).value_columns.index(f.value)
                self._latest.setdefault((f.source, f.key), []).append((j, column, f.ttl_seconds))
        self._keys = sorted({k for _, k, _, _ in self._windows} | {k for _, k in self._latest})

    def compute(self, request: Mapping[str, Any]) -> dict[str, float]:
        """Feature name -> value for one request."""
        return dict(zip(self.feature_set.names, self.matrix([request])[0].tolist(), strict=True))

    def matrix(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """float64 matrix, one row per request, columns in feature-set order."""
        plan = self._plan(requests)
        return self._assemble(plan, *self.store.read(plan.windows, plan.latest))

    async def matrix_async(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``matrix`` for an asyncio server: the store read does not block the event loop."""
        plan = self._plan(requests)
        return self._assemble(plan, *await self.store.read_async(plan.windows, plan.latest))

    def _plan(self, requests: Sequence[Mapping[str, Any]]) -> _Plan:
        fs = self.feature_set
        t = [fs.as_of(_time(r, fs.request_time)) for r in requests]
        columns = {c: np.asarray([_field(r, c) for r in requests]) for c in self._row_inputs}
        keys = {k: [str(_field(r, k)) for r in requests] for k in self._keys}
        # Requests of a micro-batch share carriers, origins and often times: each distinct query
        # is asked once. The slots map every request to its query's index in the store's reply.
        windows: dict[WindowQuery, int] = {}
        latest: dict[LatestQuery, int] = {}
        window_slots = [
            [
                windows.setdefault(WindowQuery(src, key, value, ti - w, ti, column), len(windows))
                for value, ti in zip(keys[key], t, strict=True)
            ]
            for src, key, w, column in self._windows
        ]
        latest_slots = [
            [
                latest.setdefault(LatestQuery(src, key, value, ti), len(latest))
                for value, ti in zip(keys[key], t, strict=True)
            ]
            for src, key in self._latest
        ]
        return _Plan(t, columns, list(windows), list(latest), window_slots, latest_slots)

    def _assemble(
        self, plan: _Plan, aggregates: list[Aggregate], latest_rows: list[Row | None]
    ) -> np.ndarray:
        t = plan.t
        out = np.empty((len(t), len(self.feature_set.features)), dtype=np.float64)
        if not t:
            return out
        for j, f in self._rows:
            out[:, j] = np.asarray(f.fn(plan.columns), dtype=np.float64)
        # Plain Python from here, one numpy call at the end: a micro-batch has a handful of rows,
        # where a numpy call per column would cost more than the arithmetic it vectorises.
        columns: list[int] = []
        values: list[list[float]] = []
        for members, slots in zip(self._windows.values(), plan.window_slots, strict=True):
            answers = [aggregates[k] for k in slots]
            for j, agg in members:
                columns.append(j)
                if agg == "count":
                    values.append([count for count, _ in answers])
                else:
                    values.append([total / count if count else math.nan for count, total in answers])
        for lookups, slots in zip(self._latest.values(), plan.latest_slots, strict=True):
            rows = [latest_rows[k] for k in slots]
            for j, column, ttl in lookups:
                columns.append(j)
                values.append(
                    [
                        row[1][column] if row is not None and ti - row[0] <= ttl else math.nan
                        for row, ti in zip(rows, t, strict=True)
                    ]
                )
        if columns:
            out[:, columns] = np.array(values, dtype=np.float64).T
        return out


class _Plan(NamedTuple):
    """What ``matrix`` needs between asking the store and assembling its answers."""

    t: list[int]
    columns: dict[str, np.ndarray]
    windows: list[WindowQuery]
    latest: list[LatestQuery]
    window_slots: list[list[int]]
    latest_slots: list[list[int]]


def _field(request: Mapping[str, Any], name: str) -> Any:
    try:
        return request[name]
    except KeyError:
        raise RequestError(name, "field required") from None


def _time(request: Mapping[str, Any], name: str) -> int:
    value = _field(request, name)
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise RequestError(name, f"expected epoch seconds (a number), got {type(value).__name__}")
    # NaN, infinities and integers past int64 have no time (every comparison with NaN is False);
    # int() would raise on them, or numpy overflow later.
    if not _INT64_MIN <= value < _INT64_END:
        got = f"an integer of {int(value).bit_length()} bits" if isinstance(value, int) else f"{value:g}"
        raise RequestError(name, f"expected epoch seconds (a finite number within int64), got {got}")
    return int(value)


_INT64_MIN, _INT64_END = -(2**63), 2**63
