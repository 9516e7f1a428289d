"""``observe_history``: a store warmed from the event tables answers as the offline executor does."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import EmbeddedStore, OfflineExecutor, StreamingExecutor

UNTIL = int(pd.Timestamp("2013-03-08 15:00", tz="America/New_York").timestamp())


def _near(flights: pd.DataFrame, lo: int, hi: int) -> pd.DataFrame:
    return flights[(flights["sched_ts"] >= lo) & (flights["sched_ts"] < hi)].reset_index(drop=True)


def test_history_up_to_a_cutoff_gives_the_offline_features_around_it() -> None:
    sources = event_sources()
    executor = StreamingExecutor(FLIGHT_FEATURES, EmbeddedStore())
    seen: dict[str, int] = {}
    counts = executor.observe_history(
        sources, UNTIL, progress=lambda s, n: seen.update({s: seen.get(s, 0) + n})
    )
    for src in FLIGHT_FEATURES.sources:  # exactly the events a request at or after UNTIL can see
        times = sources[src.name][src.time_column]
        lo = UNTIL - FLIGHT_FEATURES.retention_seconds(src.name)
        assert counts[src.name] == seen[src.name] == int(((times >= lo) & (times < UNTIL)).sum()) > 0
    windows = executor.history_window(sources, UNTIL)  # what was replayed, in time order
    assert {name: len(window) for name, window in windows.items()} == counts
    assert all(
        w[s.time_column].is_monotonic_increasing
        for s, w in zip(FLIGHT_FEATURES.sources, windows.values(), strict=True)
    )
    # Features are read an hour (the lead) before departure: flights until UNTIL + lead are exact.
    flights = _near(load_flights((3,)), UNTIL - 3600, UNTIL + FLIGHT_FEATURES.lead_seconds)
    assert len(flights) > 50
    offline = OfflineExecutor(FLIGHT_FEATURES).compute(flights, sources).to_numpy()
    online = executor.matrix(flights.to_dict("records"))
    assert np.array_equal(offline, online, equal_nan=True)


def test_moving_the_history_forward_equals_loading_it_at_once() -> None:
    sources = event_sources()
    at_once = StreamingExecutor(FLIGHT_FEATURES, EmbeddedStore())
    at_once.observe_history(sources, UNTIL + 7200)
    stepped = StreamingExecutor(FLIGHT_FEATURES, EmbeddedStore())
    stepped.observe_history(sources, UNTIL)
    for hour in range(2):  # like a stream: each call continues where the last one stopped
        stepped.observe_history(sources, UNTIL + 3600 * (hour + 1), since=UNTIL + 3600 * hour)
    flights = _near(load_flights((3,)), UNTIL + 3600, UNTIL + 7200 + FLIGHT_FEATURES.lead_seconds)
    requests = flights.to_dict("records")
    assert len(requests) > 50
    assert np.array_equal(at_once.matrix(requests), stepped.matrix(requests), equal_nan=True)
    assert at_once.watermarks == stepped.watermarks
