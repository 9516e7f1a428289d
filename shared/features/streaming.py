"""Streaming executor: feature state updated one event at a time, read like the online executor.

The state lives in an online store (in-process by default; pass a ``RedisStore`` to materialise it
for the REST pattern). This class adds what a stream needs on top: a watermark per source, the
late-event policy of ``shared.features.definitions`` and eviction of state nobody can ask for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shared.features.definitions import FeatureSet
from shared.features.online import OnlineExecutor
from shared.features.stores import EmbeddedStore, Event, OnlineStore

__all__ = ["StreamingExecutor"]


class StreamingExecutor:
    """Observe events, answer feature requests; agrees exactly with the offline executor."""

    def __init__(self, feature_set: FeatureSet, store: OnlineStore | None = None) -> None:
        self.feature_set = feature_set
        self.store: OnlineStore = store if store is not None else EmbeddedStore()
        self._online = OnlineExecutor(feature_set, self.store)
        self.watermarks: dict[str, int] = {}
        #: events refused because they arrived later than the source's allowed lateness
        self.late_dropped: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()

    def observe(self, source: str, record: Mapping[str, Any]) -> bool:
        """Apply one event; False when it is too late to be applied (and counted in ``late_dropped``)."""
        return self.observe_many(source, [record]) == 1

    def observe_many(
        self, source: str, records: Iterable[Mapping[str, Any]] | pd.DataFrame, chunk: int = 5000
    ) -> int:
        """Apply events in arrival order; returns how many were accepted."""
        src = self.feature_set.source(source)
        rows: Iterable[Mapping[str, Any]] = (
            records.to_dict("records") if isinstance(records, pd.DataFrame) else records
        )
        accepted = 0
        parsed: list[Event] = []
        for record in rows:
            # Parse a whole chunk before applying any of it: a malformed record then raises with
            # the watermark untouched, instead of after it moved past events that were never written.
            parsed.append(Event.from_record(src, record))
            if len(parsed) >= chunk:
                accepted += self._apply(source, parsed)
                parsed = []
        if parsed:
            accepted += self._apply(source, parsed)
        return accepted

    def history_window(
        self, sources: Mapping[str, pd.DataFrame], until: int, since: int | None = None
    ) -> dict[str, pd.DataFrame]:
        """Per source, its events with time in ``[since, until)`` in time order: what
        ``observe_history`` replays (``since`` defaults to ``until`` minus the source's retention)."""
        windows: dict[str, pd.DataFrame] = {}
        for src in self.feature_set.sources:
            frame = sources[src.name]
            start = until - self.feature_set.retention_seconds(src.name) if since is None else since
            times = frame[src.time_column].to_numpy(np.int64)
            window = frame[(times >= start) & (times < until)]
            windows[src.name] = window.sort_values([src.time_column, src.id_column], kind="stable")
        return windows

    def observe_history(
        self,
        sources: Mapping[str, pd.DataFrame],
        until: int,
        since: int | None = None,
        *,
        progress: Callable[[str, int], None] | None = None,
        chunk: int = 2000,
    ) -> dict[str, int]:
        """Replay each source's ``history_window`` as a stream would have delivered it; returns the
        accepted count per source.

        By default that is what a request at or after ``until`` can still see. Call again with
        ``since`` = the previous ``until`` to move the state forward like a stream.
        ``progress(source, n)`` is called after each chunk of ``n`` events.
        """
        accepted: dict[str, int] = {}
        for name, window in self.history_window(sources, until, since).items():
            count = 0
            for lo in range(0, len(window), chunk):
                part = window.iloc[lo : lo + chunk]
                count += self.observe_many(name, part)
                if progress is not None:
                    progress(name, len(part))
            accepted[name] = count
        return accepted

    def _apply(self, source: str, events: Sequence[Event]) -> int:
        applied = self._apply_chunk(source, events)
        # Counted per chunk: a later chunk that fails to parse leaves the written ones counted.
        self.accepted[source] += applied
        return applied

    def _apply_chunk(self, source: str, events: Sequence[Event]) -> int:
        lateness = self.feature_set.source(source).allowed_lateness_seconds
        batch: list[Event] = []
        for event in events:
            watermark = self.watermarks.get(source)
            if watermark is not None and event.ts < watermark - lateness:
                self.late_dropped[source] += 1
                continue
            self.watermarks[source] = event.ts if watermark is None else max(watermark, event.ts)
            batch.append(event)
        if batch:
            self._flush(source, batch)
        return len(batch)

    def _flush(self, source: str, batch: Sequence[Event]) -> None:
        evict = self.watermarks[source] - self.feature_set.retention_seconds(source)
        self.store.write(source, batch, evict_before=evict)

    def features(self, request: Mapping[str, Any]) -> dict[str, float]:
        return self._online.compute(request)

    def matrix(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self._online.matrix(requests)
