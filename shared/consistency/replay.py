"""Replay history through the streaming path: what would live serving have computed for these requests?

Events of every source and the requests are interleaved in event-time order: before the requests
at time ``t`` are answered, every event stamped at or before ``t`` has been observed (so weather at
``t`` comes before flights at ``t``, and a departure at ``t`` is in the state but outside the window
``[t - w, t)``; with a lead, the feature time ``t − lead`` is earlier still). ``lag_seconds``
delays a source as a lagging stream would (a what-if for staleness).
With ``horizon_seconds > 0`` requests within that span share one state and one batched read (one
``matrix()`` call): exact as well, because reads are bounded by each request's own time and the
state kept covers the longest window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from shared.features import FeatureSet, OnlineExecutor, OnlineStore, StreamingExecutor

__all__ = ["replay_serving"]


def replay_serving(
    requests: pd.DataFrame,
    sources: Mapping[str, pd.DataFrame],
    *,
    feature_set: FeatureSet | None = None,
    store: OnlineStore | None = None,
    query_store: OnlineStore | None = None,
    lag_seconds: Mapping[str, int] | None = None,
    horizon_seconds: int = 0,
    batch: int = 500,
    progress: bool = False,
) -> np.ndarray:
    """Feature matrix (rows in ``requests`` order) as a streaming executor over ``store`` serves it.

    With ``query_store`` the requests are answered by a separate ``OnlineExecutor`` reading that store
    (another connection to what the stream writes, as a REST service reads Redis).
    """
    from shared.example.flights import FLIGHT_FEATURES

    fs = feature_set or FLIGHT_FEATURES
    # A batch observes events up to its last request before answering its first: state that
    # request still needs survives only if the span stays within every source's allowed lateness.
    limit = min((fs.source(name).allowed_lateness_seconds for name in sources), default=horizon_seconds)
    if horizon_seconds > limit:
        raise ValueError(
            f"horizon_seconds={horizon_seconds} is above the sources' smallest allowed lateness"
            f" ({limit} s): state still needed would be evicted"
        )
    executor = StreamingExecutor(fs, store)
    reader = OnlineExecutor(fs, query_store) if query_store is not None else executor
    lags = dict(lag_seconds or {})
    t = requests[fs.request_time].to_numpy(np.int64)
    if t.size == 0:
        return np.empty((0, len(fs.names)), dtype=np.float64)
    timelines: dict[str, tuple[np.ndarray, list[dict[str, Any]]]] = {}
    for name, events in sources.items():
        column = fs.source(name).time_column
        ordered = events.sort_values([column], kind="stable")
        times = ordered[column].to_numpy(np.int64)
        # Events older than the retention before the first request would be evicted anyway, and
        # events after the last request are never read: start and stop the stream there.
        lo = int(np.searchsorted(times, t.min() - fs.retention_seconds(name), side="left"))
        hi = int(np.searchsorted(times, t.max(), side="right"))
        timelines[name] = (times[lo:hi], ordered.iloc[lo:hi].to_dict("records"))
    seen = dict.fromkeys(timelines, 0)
    order = np.argsort(t, kind="stable")
    records = requests.to_dict("records")
    out = np.empty((len(requests), len(fs.names)), dtype=np.float64)
    start = 0
    bar = tqdm(total=len(order), desc="replay", unit="req", disable=not progress)
    while start < len(order):
        stop = _batch_end(t, order, start, horizon_seconds, batch)
        until = int(t[order[stop - 1]])
        for name, (times, rows) in timelines.items():
            upto = int(np.searchsorted(times, until - lags.get(name, 0), side="right"))
            if upto > seen[name]:
                executor.observe_many(name, rows[seen[name] : upto])
                seen[name] = upto
        idx = order[start:stop]
        out[idx] = reader.matrix([records[i] for i in idx])
        bar.update(stop - start)
        start = stop
    bar.close()
    return out


def _batch_end(t: np.ndarray, order: np.ndarray, start: int, horizon: int, batch: int) -> int:
    first = t[order[start]]
    limit = min(start + batch, len(order))
    # Requests sorted by time: the batch ends at the first one beyond the horizon (or the size cap).
    times = t[order[start:limit]]
    return start + int(np.searchsorted(times, first + horizon, side="right"))
