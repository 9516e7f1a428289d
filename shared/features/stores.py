"""Online stores: per-key, time-ordered event state that the online and streaming executors read.

Two backends with identical semantics:

* ``EmbeddedStore`` keeps sorted lists in the process (quick start, tests, the streaming worker).
* ``RedisStore`` keeps one sorted set per (source, key column, key value), scored by event time.

An event is stored as a *member* string ``"<event_id>|<v1>|<v2>..."``. Members are unique per event,
so writing the same event twice is a no-op (replays and at-least-once delivery are idempotent), and
equal times are ordered by member, in Redis and here alike. Writing a member again with another
time moves it (Redis ``ZADD`` semantics).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from shared.features import _redis_lua as _lua
from shared.features.definitions import EventSource

__all__ = [
    "Aggregate",
    "EmbeddedStore",
    "Event",
    "LatestQuery",
    "OnlineStore",
    "RedisStore",
    "Row",
    "WindowQuery",
]


@dataclass(frozen=True)
class Event:
    """One event as stored: time, id, the key value per key column, and the value columns."""

    ts: int
    event_id: str
    keys: tuple[tuple[str, str], ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        # The member string separates the id from the values with "|": an id holding one would be
        # read back as a value (in Redis's scripts and here alike), corrupting every later read.
        if "|" in self.event_id:
            raise ValueError(f"event id {self.event_id!r} contains '|', which the stores use as a separator")

    @classmethod
    def from_record(cls, source: EventSource, record: Mapping[str, Any]) -> Event:
        """The event a raw record of ``source`` describes (time, id, keys and values by column)."""
        return cls(
            ts=int(record[source.time_column]),
            event_id=str(record[source.id_column]),
            keys=tuple((k, str(record[k])) for k in source.key_columns),
            values=tuple(float(record[v]) for v in source.value_columns),
        )

    def member(self) -> str:
        return "|".join([self.event_id, *map(repr, map(float, self.values))])


class WindowQuery(NamedTuple):
    """Count and sum of value column ``column`` over events of ``source`` with ``key == value`` and
    time in ``[start, end)``. (A named tuple: a request builds a dozen, and they are dict keys.)"""

    source: str
    key: str
    value: str
    start: int
    end: int
    column: int


class LatestQuery(NamedTuple):
    """The latest event of ``source`` with ``key == value`` and time at or before ``at``."""

    source: str
    key: str
    value: str
    at: int


Row = tuple[int, tuple[float, ...]]
#: (count, sum) of one window
Aggregate = tuple[int, float]


def _decode(member: str) -> tuple[float, ...]:
    return tuple(map(float, member.split("|")[1:]))


class OnlineStore(Protocol):
    """What executors need from an online store. Reads are batched: one round trip per request."""

    def write(self, source: str, events: Sequence[Event], evict_before: int | None = None) -> None: ...

    def read(
        self, windows: Sequence[WindowQuery], latest: Sequence[LatestQuery]
    ) -> tuple[list[Aggregate], list[Row | None]]: ...

    async def read_async(
        self, windows: Sequence[WindowQuery], latest: Sequence[LatestQuery]
    ) -> tuple[list[Aggregate], list[Row | None]]:
        """``read`` for an asyncio server: must not block the event loop while waiting."""
        ...

    def ping(self) -> bool: ...

    def clear(self) -> None: ...


class EmbeddedStore:
    """In-process store: a sorted list of (time, member, values) per key. Not shared between processes."""

    def __init__(self) -> None:
        # Values are kept decoded next to the member so reads cost no parsing.
        self._data: dict[str, list[tuple[int, str, tuple[float, ...]]]] = {}
        self._times: dict[str, dict[str, int]] = {}  # member -> time, per key (a sorted set's index)

    def write(self, source: str, events: Sequence[Event], evict_before: int | None = None) -> None:
        touched: set[str] = set()
        for e in events:
            member = e.member()
            values = _decode(member)  # round-trip through the member, exactly as Redis would
            for key, value in e.keys:
                name = _key(source, key, value)
                rows = self._data.setdefault(name, [])
                times = self._times.setdefault(name, {})
                previous = times.get(member)
                if previous == e.ts:
                    touched.add(name)
                    continue
                if previous is not None:  # same member, new time: it moves, as ZADD does
                    del rows[bisect.bisect_left(rows, (previous, member), key=_order)]
                rows.insert(bisect.bisect_left(rows, (e.ts, member), key=_order), (e.ts, member, values))
                times[member] = e.ts
                touched.add(name)
        if evict_before is not None:
            for name in touched:
                rows = self._data[name]
                cut = bisect.bisect_left(rows, (evict_before, ""), key=_order)
                for _, member, _ in rows[:cut]:
                    del self._times[name][member]
                del rows[:cut]

    def read(
        self, windows: Sequence[WindowQuery], latest: Sequence[LatestQuery]
    ) -> tuple[list[Aggregate], list[Row | None]]:
        aggregates: list[Aggregate] = []
        for q in windows:
            rows = self._data.get(_key(q.source, q.key, q.value), [])
            lo = bisect.bisect_left(rows, (q.start, ""), key=_order)
            hi = bisect.bisect_left(rows, (q.end, ""), key=_order)
            # Summed in time order, like the Redis script, so both stores give the same float.
            aggregates.append((hi - lo, _sum(row[2][q.column] for row in rows[lo:hi])))
        latest_rows: list[Row | None] = []
        for lq in latest:
            rows = self._data.get(_key(lq.source, lq.key, lq.value), [])
            i = bisect.bisect_left(rows, (lq.at + 1, ""), key=_order) - 1
            latest_rows.append((rows[i][0], rows[i][2]) if i >= 0 else None)
        return aggregates, latest_rows

    async def read_async(
        self, windows: Sequence[WindowQuery], latest: Sequence[LatestQuery]
    ) -> tuple[list[Aggregate], list[Row | None]]:
        return self.read(windows, latest)  # in memory: nothing to wait for

    def ping(self) -> bool:
        return True

    def clear(self) -> None:
        self._data.clear()
        self._times.clear()

    def keys(self) -> Iterable[str]:
        return self._data.keys()


class RedisStore:
    """Redis backend: sorted sets ``<prefix>:s2:<source>:<key>=<value>`` scored by event time.

    ``s2`` names the layout (events plus running sums); keys of another layout are never read, so
    state written by an older version is ignored rather than misread.

    Beside each sorted set of events, a *cumulative* sorted set (same name + ``:cum``) holds, per
    event, the running count and running sums up to and including it, so a window's count and sum
    are the difference of two entries: two O(log n) lookups instead of a scan of every event in
    the window (a 24 h window of a busy airport holds hundreds). Running sums are exact only for
    integer values below 2**53, so each entry also counts the values that are not (fractions, NaN,
    huge); a window containing any of them is summed by scanning, in time order, like
    ``EmbeddedStore``. Both paths therefore give bit-identical results.

    Each written key also gets an expiry of ``ttl_seconds`` (wall clock), so keys of entities that
    stop producing events disappear instead of growing the keyspace forever.
    """

    def __init__(self, url: str, prefix: str = "mlp", ttl_seconds: int | None = 7 * 24 * 3600) -> None:
        import redis  # the client is only needed when this backend is chosen

        self._redis: Any = redis.Redis.from_url(url, decode_responses=True)
        self._write_script = self._redis.register_script(_lua.COMMON + _lua.WRITE)
        self._read_script = self._redis.register_script(_lua.COMMON + _lua.READ)
        from shared.features.resp import AsyncRedis

        self._async = AsyncRedis(url)  # read_async's client; connects on first use, in that loop
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    def _name(self, source: str, key: str, value: str) -> str:
        return f"{self.prefix}:{_LAYOUT}:{_key(source, key, value)}"

    def write(self, source: str, events: Sequence[Event], evict_before: int | None = None) -> None:
        if not events:
            return
        names: dict[str, int] = {}
        args: list[Any] = [len(events[0].values)]
        for e in events:
            member = e.member()
            for key, value in e.keys:
                name = self._name(source, key, value)
                if name not in names:
                    names[name] = 2 * len(names) + 1  # KEYS holds (events, cumulative) pairs
                args += [names[name], e.ts, member]
        keys = [k for name in names for k in (name, name + ":cum")]
        pipe = self._redis.pipeline(transaction=False)
        self._write_script(keys=keys, args=args, client=pipe)
        for name in keys:
            if evict_before is not None:
                pipe.zremrangebyscore(name, "-inf", f"({evict_before}")
            if self.ttl_seconds:
                pipe.expire(name, self.ttl_seconds)
        pipe.execute()

    def read(
        self, windows: Sequence[WindowQuery], latest: Sequence[LatestQuery]
    ) -> tuple[list[Aggregate], list[Row | None]]:
        if not windows and not latest:
            return [], []
        keys, args = self._read_command(windows, latest)
        return _read_reply(self._read_script(keys=keys, args=args))

    async def read_async(
        self, windows: Sequence[WindowQuery], latest: Sequence[LatestQuery]
    ) -> tuple[list[Aggregate], list[Row | None]]:
        """``read`` on the running event loop, without blocking it (see ``shared.features.resp``)."""
        if not windows and not latest:
            return [], []
        keys, args = self._read_command(windows, latest)
        script = self._read_script
        return _read_reply(await self._async.run_script(script.sha, script.script, keys, args))

    def _read_command(
        self, windows: Sequence[WindowQuery], latest: Sequence[LatestQuery]
    ) -> tuple[list[str], list[str]]:
        # One EVALSHA answers everything (a pipeline holding a script would first ask SCRIPT
        # EXISTS, which redis-py does on every execute). The numbers travel as one comma-joined
        # string each way: per-argument packing and reply parsing cost more than Redis's work.
        index: dict[tuple[str, str, str], int] = {}
        spec: list[int] = []
        for q in windows:
            k = index.setdefault((q.source, q.key, q.value), 2 * len(index) + 1)
            spec += [k, q.start, q.end, q.column + 1]
        asof: list[int] = []
        for lq in latest:
            asof += [index.setdefault((lq.source, lq.key, lq.value), 2 * len(index) + 1), lq.at]
        keys = []
        for source, key, value in index:  # KEYS holds (events, cumulative) pairs; Lua is 1-based
            name = self._name(source, key, value)
            keys += [name, name + ":cum"]
        return keys, [",".join(map(str, spec)), ",".join(map(str, asof))]

    def ping(self) -> bool:
        return bool(self._redis.ping())

    def clear(self) -> None:
        cursor = 0
        while True:
            cursor, names = self._redis.scan(cursor, match=f"{self.prefix}:*", count=1000)
            if names:
                self._redis.delete(*names)
            if cursor == 0:
                break


_LAYOUT = "s2"


def _sum(values: Iterable[float]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total


def _read_reply(reply: list[str]) -> tuple[list[Aggregate], list[Row | None]]:
    numbers = reply[0].split(",") if reply[0] else []  # "" when there were no windows
    aggregates = [(int(numbers[i]), float(numbers[i + 1])) for i in range(0, len(numbers), 2)]
    latest_rows: list[Row | None] = [
        (int(reply[i + 1]), _decode(reply[i])) if reply[i] else None for i in range(1, len(reply), 2)
    ]
    return aggregates, latest_rows


def _order(row: tuple[int, str, tuple[float, ...]]) -> tuple[int, str]:
    return row[0], row[1]


def _key(source: str, key: str, value: str) -> str:
    return f"{source}:{key}={value}"
