"""The consumer-facing side: a compacted control topic says whose predictions are live; the reader follows.

Blue-green for a stream: each model version runs its own consumer group over the same input and
writes its own prediction topic (``<prefix>.predictions.<version>``), whose partition ``p`` holds
the predictions of input partition ``p`` in input order. Nothing is served from a topic until the
control topic (one partition, compacted, key ``live``) names it.

When the live topic changes, the reader continues in the new topic where it stopped in the old one:
per partition it knows the latest request time ``L_p`` it served, so every request not yet served
has time ``>= L_p``; it seeks the new topic to ``offsets_for_times(L_p - 1 s)`` and drops keys it
already served (``flight_id``). A switch and a rollback therefore lose nothing and serve each
flight once. The new version's worker must have started at or before the reader's position (a new
group starts at the first retained event by default, so it has).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from patterns.streaming.messages import Topics, ensure_topics, producer
from patterns.streaming.retry import CALL_TIMEOUT_MS, RECONNECT, Outage, transient_errors

__all__ = ["Control", "ControlFollower", "PredictionReader", "Route", "Served"]

_LIVE = b"live"


@dataclass(frozen=True)
class Route:
    """The live version and the topic it writes (``version`` None: serve nothing)."""

    version: str | None
    topic: str | None
    slot: str | None = None
    seq: int = 0


@dataclass(frozen=True)
class Served:
    flight_id: str
    version: str
    probability: float
    sched_ts: int
    partition: int
    value: dict[str, Any]


class Control:
    """Read and write the control topic (``topics.control``: 1 partition, compacted)."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        ensure_topics(bootstrap, {topics.control: 1}, compacted=(topics.control,))

    def publish(self, version: str | None, slot: str | None = None) -> Route:
        seq = self.current().seq + 1
        route = Route(version, self.topics.predictions(version) if version else None, slot, seq)
        control = producer(self.bootstrap, "mlp-control")
        try:
            body = {
                "version": route.version,
                "topic": route.topic,
                "slot": slot,
                "seq": seq,
                "at": time.time(),
            }
            control.send(self.topics.control, json.dumps(body).encode(), key=_LIVE).get(timeout=30)
        finally:
            control.close()
        return route

    def current(self) -> Route:
        """The latest route on the control topic (``Route(None, None)`` if none was ever published)."""
        follower = ControlFollower(self.bootstrap, self.topics)
        try:
            return follower.poll(timeout_ms=1000, to_end=True)
        finally:
            follower.close()


class ControlFollower:
    """Tails the control topic from its beginning; ``poll`` returns the latest route seen."""

    def __init__(self, bootstrap: str, topics: Topics) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._tp = TopicPartition(topics.control, 0)
        self._consumer = KafkaConsumer(
            allow_auto_create_topics=False, bootstrap_servers=bootstrap, enable_auto_commit=False, **RECONNECT
        )
        self._consumer.assign([self._tp])
        self._consumer.seek_to_beginning(self._tp)
        self.route = Route(None, None)

    def poll(self, timeout_ms: int = 0, to_end: bool = False) -> Route:
        # A bounded wait: during an outage the caller hears of it in seconds, not after 30.
        end = self._consumer.end_offsets([self._tp], CALL_TIMEOUT_MS)[self._tp] if to_end else None
        while True:
            for msgs in self._consumer.poll(timeout_ms=timeout_ms).values():
                for m in msgs:
                    if m.key == _LIVE and m.value:
                        b = json.loads(m.value)
                        self.route = Route(b["version"], b["topic"], b.get("slot"), int(b.get("seq", 0)))
            if end is None or self._consumer.position(self._tp) >= end:
                return self.route

    def close(self) -> None:
        self._consumer.close()


class PredictionReader:
    """Serves the live version's predictions, each flight once, following the control topic."""

    def __init__(self, bootstrap: str, topics: Topics, horizon_s: int = 25 * 3600) -> None:
        from kafka import KafkaConsumer

        self.bootstrap = bootstrap
        self.topics = topics
        self.horizon_s = horizon_s
        self._control = ControlFollower(bootstrap, topics)
        self._consumer = KafkaConsumer(
            allow_auto_create_topics=False, bootstrap_servers=bootstrap, enable_auto_commit=False, **RECONNECT
        )
        self.route = Route(None, None)
        self.switches: list[Route] = []
        #: per input partition: latest request time served
        self.served_until: dict[int, int] = {}
        self._served: dict[str, int] = {}
        self.duplicates_dropped = 0
        self.control_check_s = 0.5
        self._next_check = 0.0
        self._outage = Outage("reader")

    def poll(self, timeout_ms: int = 200) -> list[Served]:
        """The predictions that arrived; ``[]`` (after a backoff) while Kafka does not answer."""
        try:
            out = self._poll(timeout_ms)
        except transient_errors() as exc:
            time.sleep(self._outage.failed("poll", exc))
            return []
        self._outage.ok()
        return out

    def _poll(self, timeout_ms: int) -> list[Served]:
        # Read the control topic to its end at least every ``control_check_s``: a reader never
        # serves from a topic whose replacement was published longer ago than that.
        check = time.monotonic() >= self._next_check
        if check:
            self._next_check = time.monotonic() + self.control_check_s
        route = self._control.poll(timeout_ms=0, to_end=check)
        if route.seq != self.route.seq:
            self._follow(route)
        if self.route.topic is None:
            time.sleep(timeout_ms / 1000)
            return []
        out: list[Served] = []
        for msgs in self._consumer.poll(timeout_ms=timeout_ms).values():
            for m in msgs:
                out.extend(self._serve(m))
        return out

    def _serve(self, m: Any) -> list[Served]:
        v = json.loads(m.value)
        fid, ts, p = v["flight_id"], int(v["sched_ts"]), m.partition
        if fid in self._served:
            self.duplicates_dropped += 1
            return []
        self._served[fid] = ts
        self.served_until[p] = max(self.served_until.get(p, ts), ts)
        if len(self._served) > 200_000:
            self._forget()
        return [Served(fid, v["model_version"], float(v["probability"]), ts, p, v)]

    def _forget(self) -> None:
        floor = min(self.served_until.values()) - self.horizon_s
        self._served = {k: t for k, t in self._served.items() if t >= floor}

    def _follow(self, route: Route) -> None:
        from kafka import TopicPartition

        if route.topic == self.route.topic:  # re-published (e.g. deploy recovery): keep reading
            self.route = route
            return
        if route.topic is None:
            self._consumer.assign([])
            self._adopt(route)
            return
        n = len(self._consumer.partitions_for_topic(self.topics.events) or ()) or 1
        ensure_topics(self.bootstrap, {route.topic: n})
        tps = [TopicPartition(route.topic, p) for p in range(n)]
        self._consumer.assign(tps)
        served = self.served_until
        targets = {tp: (served[tp.partition] - 1) * 1000 for tp in tps if tp.partition in served}
        # End offsets first: whatever the new worker appends after this snapshot is read.
        ends = self._consumer.end_offsets(tps, CALL_TIMEOUT_MS)
        found = self._consumer.offsets_for_times(targets, CALL_TIMEOUT_MS) if targets else {}
        for tp in tps:
            if tp not in targets:
                self._consumer.seek_to_beginning(tp)
            else:
                hit = found.get(tp)
                self._consumer.seek(tp, ends[tp] if hit is None else hit.offset)
        self._adopt(route)

    def _adopt(self, route: Route) -> None:
        # Last in ``_follow``: a switch cut short by an outage is not taken as done, the next poll
        # follows it again from the start (reading the new topic from a default position loses).
        self.route = route
        self.switches.append(route)

    def follow(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Served]:
        while not stop():
            yield from self.poll()

    def close(self) -> None:
        self._control.close()
        self._consumer.close()
