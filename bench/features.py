"""Feature-core benchmark: offline features for the whole year, online lookup latency per store.

Baselines measured in the same run:
* offline: reading the raw tables (the floor every pipeline pays) — features cost a ratio of that;
* online: a bare Redis PING round trip (the network floor of one lookup) — the Redis store's
  lookup is a ratio of it; the embedded store is shown against the same floor.

    .venv/bin/python bench/features.py [--requests 2000] [--rounds 3] [--plot features.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _plot import bar_chart

from shared import services
from shared.example import data
from shared.example.flights import FLIGHT_FEATURES
from shared.features import EmbeddedStore, OfflineExecutor, OnlineExecutor, RedisStore, StreamingExecutor


def _best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="online lookups per store")
    parser.add_argument("--rounds", type=int, default=3, help="offline timings: the best of this many runs")
    parser.add_argument("--plot", type=Path, help="also draw the online lookups to this PNG file")
    args = parser.parse_args()
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests must be at least 1")

    def load() -> None:
        data._flights_cached.cache_clear()
        data._weather_cached.cache_clear()
        data.load_flights()
        data.load_weather()

    load_s = _best_of(args.rounds, load)
    flights = data.load_flights()
    sources = {"departures": data.departures(flights), "weather": data.load_weather()}
    offline = OfflineExecutor(FLIGHT_FEATURES)
    offline_s = _best_of(args.rounds, lambda: offline.compute(flights, sources))
    print(f"\nOffline features, whole year ({len(flights):,} flights, {len(FLIGHT_FEATURES.names)} features)")
    print(f"{'step':<34}{'seconds':>9}{'rows/s':>12}{'ratio':>8}")
    print(f"{'read raw tables (baseline)':<34}{load_s:>9.2f}{len(flights) / load_s:>12,.0f}{1:>8.2f}")
    print(
        f"{'OfflineExecutor.compute':<34}{offline_s:>9.2f}{len(flights) / offline_s:>12,.0f}"
        f"{offline_s / load_s:>8.2f}"
    )

    # Online: state as of 2013-07-04 00:00 local; requests are that morning's flights.
    cutoff = int(flights[(flights["month"] == 7) & (flights["day"] == 4)]["sched_ts"].min())
    day = flights[(flights["sched_ts"] >= cutoff) & (flights["sched_ts"] < cutoff + 3 * 3600)]
    requests = (day.to_dict("records") * (args.requests // max(len(day), 1) + 1))[: args.requests]
    redis_url = services.get("redis").up().url  # started by the project's own scripts if not running
    redis_store = RedisStore(redis_url, prefix="bench-features")
    redis_store.clear()
    rows = []
    import redis

    client = redis.Redis.from_url(redis_url)
    pings = []
    for _ in range(args.requests):
        start = time.perf_counter()
        client.ping()
        pings.append(time.perf_counter() - start)
    floor = _percentiles(pings)
    rows.append(("Redis PING (baseline)", *floor))
    for name, store in (("embedded store", EmbeddedStore()), ("Redis store", redis_store)):
        loader = StreamingExecutor(FLIGHT_FEATURES, store)
        for source, frame, column in (
            ("weather", sources["weather"], "obs_ts"),
            ("departures", sources["departures"], "dep_ts"),
        ):
            loader.observe_many(source, frame[frame[column].between(cutoff - 2 * 86400, cutoff - 1)])
        executor = OnlineExecutor(FLIGHT_FEATURES, store)
        samples = []
        for request in requests:
            start = time.perf_counter()
            executor.compute(request)
            samples.append(time.perf_counter() - start)
        rows.append((f"online lookup, {name}", *_percentiles(samples)))
    redis_store.clear()
    print(f"\nOnline feature lookup, one request at a time ({args.requests:,} requests)")
    print(f"{'path':<34}{'p50 ms':>9}{'p99 ms':>9}{'p50 / PING':>12}")
    for label, p50, p99 in rows:
        print(f"{label:<34}{p50:>9.3f}{p99:>9.3f}{p50 / floor[0]:>12.1f}")
    if args.plot:
        bar_chart(
            args.plot,
            f"Online feature lookup, one request at a time ({args.requests:,} requests)",
            [(f"{label} {q}", v) for label, p50, p99 in rows for q, v in (("p50", p50), ("p99", p99))],
            "milliseconds",
            baselines=("Redis PING (baseline) p50", "Redis PING (baseline) p99"),
        )


if __name__ == "__main__":
    main()
