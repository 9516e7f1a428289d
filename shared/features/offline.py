"""Offline executor: every feature for a whole table of requests at once, point-in-time correct.

Events are grouped by key and sorted by time once; each request then finds its window with a
binary search (``searchsorted``) and sums with prefix sums, so the year's 336,776 flights take about
a second. Window sums are differences of prefix sums: exact for the integer-valued delays of the
example, which is what lets the parity tests compare executors with ``==``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from shared.features.definitions import AsOfFeature, FeatureSet, RowFeature, WindowFeature

__all__ = ["OfflineExecutor"]


class OfflineExecutor:
    """Vectorised feature computation over a request table and the event tables of each source."""

    def __init__(self, feature_set: FeatureSet) -> None:
        self.feature_set = feature_set

    def compute(self, requests: pd.DataFrame, sources: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """One row per request, one float64 column per feature (in feature-set order)."""
        fs = self.feature_set
        t = requests[fs.request_time].to_numpy(np.int64)
        columns = {c: requests[c].to_numpy() for c in requests.columns}
        out: dict[str, np.ndarray] = {}
        grouped: dict[tuple[str, str, str], dict[object, tuple[np.ndarray, np.ndarray]]] = {}
        for f in fs.features:
            if isinstance(f, RowFeature):
                out[f.name] = np.asarray(f.fn(columns), dtype=np.float64)
                continue
            source = fs.source(f.source)
            cache_key = (f.source, f.key, f.value)
            if cache_key not in grouped:
                grouped[cache_key] = _group_events(
                    sources[f.source], source.time_column, f.key, f.value, source.id_column
                )
            if isinstance(f, AsOfFeature):
                out[f.name] = _asof(t, columns[f.key], grouped[cache_key], f.ttl_seconds)
            else:
                out[f.name] = _window(t, columns[f.key], grouped[cache_key], f)
        return pd.DataFrame(out, index=requests.index, columns=fs.names)


def _group_events(
    events: pd.DataFrame, time_column: str, key: str, value: str, id_column: str
) -> dict[object, tuple[np.ndarray, np.ndarray]]:
    # Sorting by id after time gives ties the same order the online stores use (member order).
    ordered = events.sort_values([time_column, id_column], kind="stable")
    groups: dict[object, tuple[np.ndarray, np.ndarray]] = {}
    for k, part in ordered.groupby(key, sort=False):
        groups[k] = (part[time_column].to_numpy(np.int64), part[value].to_numpy(np.float64))
    return groups


def _positions_by_key(keys: np.ndarray) -> dict[object, np.ndarray]:
    return {k: np.asarray(idx) for k, idx in pd.Series(keys).groupby(keys, sort=False).indices.items()}


def _asof(
    t: np.ndarray, keys: np.ndarray, groups: Mapping[object, tuple[np.ndarray, np.ndarray]], ttl: int
) -> np.ndarray:
    result = np.full(len(t), np.nan)
    for k, pos in _positions_by_key(keys).items():
        if k not in groups:
            continue
        times, values = groups[k]
        # Latest event at or before t ("right" keeps an observation stamped exactly t).
        idx = np.searchsorted(times, t[pos], side="right") - 1
        found = idx >= 0
        fresh = found & (t[pos] - times[idx.clip(0)] <= ttl)
        result[pos[fresh]] = values[idx[fresh]]
    return result


def _window(
    t: np.ndarray, keys: np.ndarray, groups: Mapping[object, tuple[np.ndarray, np.ndarray]], f: WindowFeature
) -> np.ndarray:
    counts = np.zeros(len(t))
    sums = np.zeros(len(t))
    for k, pos in _positions_by_key(keys).items():
        if k not in groups:
            continue
        times, values = groups[k]
        prefix = np.concatenate([[0.0], np.cumsum(values)])
        hi = np.searchsorted(times, t[pos], side="left")  # strictly before t
        lo = np.searchsorted(times, t[pos] - f.window_seconds, side="left")
        counts[pos] = hi - lo
        sums[pos] = prefix[hi] - prefix[lo]
    if f.agg == "count":
        return counts
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)
