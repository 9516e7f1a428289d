"""Both online stores answer the same reads with the same rows (Redis is the real server)."""

from __future__ import annotations

import asyncio
import random
import uuid

import numpy as np
import pytest
import redis

from shared.example.data import departures, load_flights, load_weather
from shared.example.flights import FLIGHT_FEATURES
from shared.features import EmbeddedStore, OnlineExecutor, RedisStore, StreamingExecutor
from shared.features.stores import Event, LatestQuery, OnlineStore, WindowQuery


@pytest.fixture
def redis_store(redis_server) -> RedisStore:
    store = RedisStore(redis_server.url, prefix=f"test-{uuid.uuid4().hex[:8]}")
    yield store
    store.clear()


def _random_events(rng: random.Random, n: int) -> list[Event]:
    return [
        Event(
            ts=rng.randrange(0, 10_000),
            event_id=f"e{rng.randrange(0, n // 2)}",  # some ids repeat
            keys=(("carrier", rng.choice("AB")), ("origin", rng.choice("XY"))),
            values=(float(rng.randrange(-30, 300)),),
        )
        for _ in range(n)
    ]


def _read_all(store: OnlineStore, rng: random.Random, *, on_event_loop: bool = False) -> tuple[list, list]:
    windows = [
        WindowQuery("departures", key, value, start, start + rng.randrange(0, 4000), 0)
        for key, value in (("carrier", "A"), ("carrier", "B"), ("origin", "X"), ("origin", "Y"))
        for start in (rng.randrange(-500, 10_500) for _ in range(5))
    ]
    latest = [
        LatestQuery("departures", "origin", value, rng.randrange(-100, 10_100))
        for value in ("X", "Y", "Z")
        for _ in range(5)
    ]
    if on_event_loop:
        return asyncio.run(store.read_async(windows, latest))
    return store.read(windows, latest)


# Several seeds: one alone (7) once passed while a late write after an eviction broke Redis's totals.
@pytest.mark.parametrize("seed", range(8))
def test_embedded_and_redis_stores_agree_on_random_writes_reads_and_evictions(
    redis_server, redis_store, seed: int
) -> None:
    rng = random.Random(seed)
    embedded = EmbeddedStore()
    seen_nonempty = False
    for round_ in range(4):
        events = _random_events(rng, 300)
        evict = None if round_ < 2 else rng.randrange(0, 5000)
        embedded.write("departures", events, evict_before=evict)
        redis_store.write("departures", events, evict_before=evict)
        state = rng.getstate()
        expected = _read_all(embedded, rng)
        rng.setstate(state)
        assert _read_all(redis_store, rng) == expected
        rng.setstate(state)
        assert _read_all(redis_store, rng, on_event_loop=True) == expected
        seen_nonempty |= any(count for count, _ in expected[0])
        assert _one_running_total_per_event(redis_server.url, redis_store.prefix)
    assert seen_nonempty and redis_store.ping()


def _one_running_total_per_event(url: str, prefix: str) -> bool:
    """Each key's running-totals set holds one entry per stored event: no stale entry survives a
    rewrite (reads would still mostly agree, while the set grew without bound)."""
    client = redis.Redis.from_url(url, decode_responses=True)
    names = [n for n in client.scan_iter(match=f"{prefix}:*") if not n.endswith(":cum")]
    return bool(names) and all(client.zcard(n) == client.zcard(n + ":cum") for n in names)


def test_window_sums_keep_full_float_precision_in_redis(redis_store) -> None:
    values = [0.1, 1e-17, 123456.789, -2.5e300, 2.5e300, 1 / 3]
    events = [
        Event(ts=i, event_id=f"p{i}", keys=(("carrier", "A"),), values=(v,)) for i, v in enumerate(values)
    ]
    redis_store.write("departures", events)
    embedded = EmbeddedStore()
    embedded.write("departures", events)
    query = [WindowQuery("departures", "carrier", "A", 0, 100, 0)]
    expected = 0.0
    for v in values:
        expected += v
    assert redis_store.read(query, []) == embedded.read(query, []) == ([(len(values), expected)], [])


def test_online_features_from_redis_equal_the_embedded_store_on_a_real_day(redis_store) -> None:
    flights = load_flights()
    cutoff = int(flights[(flights["month"] == 7) & (flights["day"] == 4)]["sched_ts"].min())
    history = departures(flights)
    weather = load_weather()
    embedded = EmbeddedStore()
    for store in (embedded, redis_store):
        loader = StreamingExecutor(FLIGHT_FEATURES, store)
        # Two days of history is more than the longest window needs.
        loader.observe_many("weather", weather[weather["obs_ts"].between(cutoff - 2 * 86400, cutoff - 1)])
        loader.observe_many("departures", history[history["dep_ts"].between(cutoff - 2 * 86400, cutoff - 1)])
    # Requests within the allowed lateness of the loaded state (the first hour of the day and a bit).
    lateness = FLIGHT_FEATURES.source("departures").allowed_lateness_seconds
    soon = flights[(flights["sched_ts"] >= cutoff) & (flights["sched_ts"] < cutoff + lateness + 3600)]
    requests = soon.to_dict("records")
    assert len(requests) > 20
    from_redis = OnlineExecutor(FLIGHT_FEATURES, redis_store).matrix(requests)
    from_embedded = OnlineExecutor(FLIGHT_FEATURES, embedded).matrix(requests)
    assert np.array_equal(from_redis, from_embedded, equal_nan=True)
    assert np.isfinite(from_redis[:, FLIGHT_FEATURES.names.index("carrier_dep_delay_24h")]).all()


def test_redis_running_sums_and_scans_agree_with_embedded_on_mixed_columns(redis_store) -> None:
    """Two value columns: whole numbers (running-sum path) and some fractions (scan fallback)."""
    rng = random.Random(11)
    embedded = EmbeddedStore()
    for round_ in range(3):
        events = [
            Event(
                ts=rng.randrange(0, 5_000),
                event_id=f"m{rng.randrange(0, 200)}",  # repeats: moves and duplicates
                keys=(("origin", rng.choice("XY")),),
                values=(float(rng.randrange(-60, 600)), rng.choice([1.0, 2.0, 0.1, 0.25, -3.0])),
            )
            for _ in range(250)
        ]
        evict = None if round_ == 0 else rng.randrange(0, 2_000)
        embedded.write("departures", events, evict_before=evict)
        redis_store.write("departures", events, evict_before=evict)
        windows = [
            WindowQuery("departures", "origin", value, start, start + rng.randrange(1, 3_000), column)
            for value in ("X", "Y", "Z")
            for column in (0, 1)
            for start in (rng.randrange(-200, 5_200) for _ in range(8))
        ]
        expected = embedded.read(windows, [])
        assert redis_store.read(windows, []) == expected
        assert any(count for count, _ in expected[0])


def test_an_event_written_before_every_kept_one_leaves_later_windows_exact(redis_store) -> None:
    """Everything before 100 is evicted, then an event at 50 arrives, before every entry left. Its
    running totals must agree with those of the later entries, which still count the evicted events
    (they did not once: the event started from zero and the windows after it counted too many)."""
    events = [
        Event(ts=t, event_id=f"d{t}", keys=(("origin", "X"),), values=(float(t),)) for t in range(0, 200, 10)
    ]
    late = [Event(ts=50, event_id="late", keys=(("origin", "X"),), values=(7.0,))]
    embedded = EmbeddedStore()
    for store in (redis_store, embedded):
        store.write("departures", events, evict_before=100)
        store.write("departures", late)
    windows = [
        WindowQuery("departures", "origin", "X", start, end, 0)
        for start in (0, 40, 60, 100, 150)
        for end in (55, 120, 200)
        if start < end
    ]
    assert redis_store.read(windows, []) == embedded.read(windows, [])
    # [60, 200): the ten events kept (100..190), neither the late one nor the evicted ones.
    assert redis_store.read([WindowQuery("departures", "origin", "X", 60, 200, 0)], []) == (
        [(10, float(sum(range(100, 200, 10))))],
        [],
    )
