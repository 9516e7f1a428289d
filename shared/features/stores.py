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
from typing import Any, Protocol

from shared.features.definitions import EventSource

__all__ = ["EmbeddedStore", "Event", "LatestQuery", "OnlineStore", "RedisStore", "WindowQuery"]


@dataclass(frozen=True)
class Event:
    """One event as stored: time, id, the key value per key column, and the value columns."""

    ts: int
    event_id: str
    keys: tuple[tuple[str, str], ...]
    values: tuple[float, ...]

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


@dataclass(frozen=True)
class WindowQuery:
    """Count and sum of value column ``column`` over events of ``source`` with ``key == value`` and
    time in ``[start, end)``."""

    source: str
    key: str
    value: str
    start: int
    end: int
    column: int


@dataclass(frozen=True)
class LatestQuery:
    """The latest event of ``source`` with ``key == value`` and time at or before ``at``."""

    source: str
    key: str
    value: str
    at: int


Row = tuple[int, tuple[float, ...]]
#: (count, sum) of one window
Aggregate = tuple[int, float]


def _decode(member: str) -> tuple[float, ...]:
    return tuple(float(v) for v in member.split("|")[1:])


class OnlineStore(Protocol):
    """What executors need from an online store. Reads are batched: one round trip per request."""

    def write(self, source: str, events: Sequence[Event], evict_before: int | None = None) -> None: ...

    def read(
        self, windows: Sequence[WindowQuery], latest: Sequence[LatestQuery]
    ) -> tuple[list[Aggregate], list[Row | None]]: ...

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

    def ping(self) -> bool:
        return True

    def clear(self) -> None:
        self._data.clear()
        self._times.clear()

    def keys(self) -> Iterable[str]:
        return self._data.keys()


class RedisStore:
    """Redis backend: sorted sets ``<prefix>:<source>:<key>=<value>`` scored by event time.

    Each written key also gets an expiry of ``ttl_seconds`` (wall clock), so keys of entities that
    stop producing events disappear instead of growing the keyspace forever.
    """

    def __init__(self, url: str, prefix: str = "mlp", ttl_seconds: int | None = 7 * 24 * 3600) -> None:
        import redis  # the client is only needed when this backend is chosen

        self._redis: Any = redis.Redis.from_url(url, decode_responses=True)
        self._windows = self._redis.register_script(_WINDOWS_LUA)
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    def _name(self, source: str, key: str, value: str) -> str:
        return f"{self.prefix}:{_key(source, key, value)}"

    def write(self, source: str, events: Sequence[Event], evict_before: int | None = None) -> None:
        pipe = self._redis.pipeline(transaction=False)
        touched: set[str] = set()
        for e in events:
            member = e.member()
            for key, value in e.keys:
                name = self._name(source, key, value)
                pipe.zadd(name, {member: e.ts})
                touched.add(name)
        for name in touched:
            if evict_before is not None:
                pipe.zremrangebyscore(name, "-inf", f"({evict_before}")
            if self.ttl_seconds:
                pipe.expire(name, self.ttl_seconds)
        pipe.execute()

    def read(
        self, windows: Sequence[WindowQuery], latest: Sequence[LatestQuery]
    ) -> tuple[list[Aggregate], list[Row | None]]:
        pipe = self._redis.pipeline(transaction=False)
        if windows:
            names = list(dict.fromkeys(self._name(q.source, q.key, q.value) for q in windows))
            index = {name: i + 1 for i, name in enumerate(names)}  # Lua is 1-based
            args: list[int] = []
            for q in windows:
                args += [index[self._name(q.source, q.key, q.value)], q.start, q.end, q.column + 2]
            self._windows(keys=names, args=args, client=pipe)
        for lq in latest:
            pipe.zrevrangebyscore(
                self._name(lq.source, lq.key, lq.value), lq.at, "-inf", start=0, num=1, withscores=True
            )
        replies = pipe.execute()
        aggregates: list[Aggregate] = []
        if windows:
            flat = replies.pop(0)
            aggregates = [(int(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]
        latest_rows: list[Row | None] = [
            (int(reply[0][1]), _decode(reply[0][0])) if reply else None for reply in replies
        ]
        return aggregates, latest_rows

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


def _sum(values: Iterable[float]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total


# Count and sum of each window inside Redis: hundreds of members per window never cross the wire.
# ARGV holds (key index, start, end, field) per window; the field is the position of the value in
# "<id>|<v1>|<v2>...". Sums run in score order, as in EmbeddedStore, and %.17g round-trips doubles.
_WINDOWS_LUA = """
local out = {}
for w = 1, #ARGV, 4 do
  local members = redis.call('ZRANGEBYSCORE', KEYS[tonumber(ARGV[w])], ARGV[w + 1], '(' .. ARGV[w + 2])
  local field = tonumber(ARGV[w + 3])
  local total = 0.0
  for _, m in ipairs(members) do
    local s = 0
    for _ = 2, field do s = string.find(m, '|', s + 1, true) end
    local e = string.find(m, '|', s + 1, true)
    total = total + tonumber(string.sub(m, s + 1, e and e - 1 or -1))
  end
  out[#out + 1] = tostring(#members)
  out[#out + 1] = string.format('%.17g', total)
end
return out
"""


def _order(row: tuple[int, str, tuple[float, ...]]) -> tuple[int, str]:
    return row[0], row[1]


def _key(source: str, key: str, value: str) -> str:
    return f"{source}:{key}={value}"
