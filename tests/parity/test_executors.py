"""Real-data parity: offline, online and streaming executors agree on every flight of January 2013.

January holds 27,004 flights. Departures, weather and requests are replayed in event-time order
(everything stamped at or before ``t``, weather included, is observed before the requests at ``t``).
Every feature vector must be identical, NaN for NaN (``np.array_equal(equal_nan=True)``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from shared.consistency import replay_serving
from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import EmbeddedStore, OfflineExecutor, RedisStore

JANUARY_FLIGHTS = 27_004


@pytest.fixture(scope="module")
def january() -> tuple[pd.DataFrame, dict[str, pd.DataFrame], np.ndarray]:
    every = load_flights()
    flights = every[every["month"] == 1].reset_index(drop=True)
    sources = event_sources(every)
    offline = OfflineExecutor(FLIGHT_FEATURES).compute(flights, sources).to_numpy(np.float64)
    return flights, sources, offline


@pytest.fixture
def redis_stores(redis_server) -> Iterator[tuple[RedisStore, RedisStore]]:  # type: ignore[no-untyped-def]
    """A writer (the stream) and a reader (the online service) on their own key prefix."""
    prefix = f"parity-{uuid.uuid4().hex[:8]}"
    writer, reader = RedisStore(redis_server.url, prefix=prefix), RedisStore(redis_server.url, prefix=prefix)
    assert writer.ping()
    yield writer, reader
    writer.clear()


def _assert_identical(got: np.ndarray, offline: np.ndarray) -> None:
    assert got.shape == offline.shape == (JANUARY_FLIGHTS, len(FLIGHT_FEATURES.names))
    differ = [
        name
        for j, name in enumerate(FLIGHT_FEATURES.names)
        if not np.array_equal(got[:, j], offline[:, j], equal_nan=True)
    ]
    assert differ == []
    # The comparison is not vacuous: windows are populated and weather mostly known.
    assert np.nanmean(offline[:, FLIGHT_FEATURES.names.index("origin_dep_count_24h")]) > 100
    assert np.isnan(offline[:, FLIGHT_FEATURES.names.index("wx_temp")]).mean() < 0.05


def test_streaming_equals_offline_on_every_january_flight(january) -> None:  # type: ignore[no-untyped-def]
    flights, sources, offline = january
    # Exact interleaving: one state per distinct request time.
    _assert_identical(replay_serving(flights, sources, store=EmbeddedStore()), offline)


def test_online_embedded_equals_offline_on_every_january_flight(january) -> None:  # type: ignore[no-untyped-def]
    flights, sources, offline = january
    store = EmbeddedStore()
    # A separate OnlineExecutor reads the state the stream writes, 500 requests per matrix() call
    # within an hour of state (reads are bounded by each request's own time).
    got = replay_serving(flights, sources, store=store, query_store=store, horizon_seconds=3600, batch=500)
    _assert_identical(got, offline)


def test_online_redis_equals_offline_on_every_january_flight(january, redis_stores) -> None:  # type: ignore[no-untyped-def]
    flights, sources, offline = january
    writer, reader = redis_stores
    got = replay_serving(flights, sources, store=writer, query_store=reader, horizon_seconds=3600, batch=500)
    _assert_identical(got, offline)
