"""Replay's batching horizon is bounded by the sources' allowed lateness, not by a fixed hour."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.consistency import replay_serving
from shared.features import EventSource, FeatureSet, OfflineExecutor, WindowFeature


def _feature_set(lateness: int) -> FeatureSet:
    source = EventSource("ev", "ts", ("k",), ("v",), allowed_lateness_seconds=lateness)
    count = WindowFeature("n_10min", "ev", "k", "v", "count", 600)
    return FeatureSet("toy", "rt", (source,), (count,), request_fields=("rt", "k"))


EVENTS = pd.DataFrame(
    {"event_id": [f"e{i}" for i in range(40)], "ts": np.arange(40) * 100, "k": "a", "v": 1.0}
)
# Two requests 2,000 s apart: one batch with a horizon of 2,000 s or more.
REQUESTS = pd.DataFrame({"rt": [1000, 3000], "k": ["a", "a"]})


def test_a_horizon_beyond_the_lateness_is_refused_naming_it() -> None:
    fs = _feature_set(lateness=0)
    with pytest.raises(ValueError, match=r"horizon_seconds=3600 .* \(0 s\)"):
        replay_serving(REQUESTS, {"ev": EVENTS}, feature_set=fs, horizon_seconds=3600)


@pytest.mark.parametrize("lateness", [0, 7200])
def test_every_allowed_horizon_equals_the_offline_executor(lateness: int) -> None:
    fs = _feature_set(lateness)
    offline = OfflineExecutor(fs).compute(REQUESTS, {"ev": EVENTS})["n_10min"].to_numpy()
    assert offline.tolist() == [6.0, 6.0]  # events at t-600..t-100 (the window is [t-600, t))
    for horizon in sorted({0, lateness}):
        got = replay_serving(REQUESTS, {"ev": EVENTS}, feature_set=fs, horizon_seconds=horizon)[:, 0]
        assert got.tolist() == offline.tolist(), horizon
