"""Materialise the online store from history: replay departures and weather up to a cut-off.

``load_history`` feeds ``StreamingExecutor.observe_many`` (which applies the late-event policy and
evicts old state), so the store ends in the same state a live stream would have left it in. Only
the events that can still matter are replayed: those in ``[until - retention, until)`` per source,
where retention = lead + longest window + allowed lateness. Requests with ``sched_ts`` in
``[until - 1 h, until + 1 h)`` then get exactly the offline executor's features (their feature
time, an hour before, is within the loaded history).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from patterns.rest_api.schemas import InputError, parse_time
from shared.example.data import departures, load_flights, load_weather
from shared.features import StreamingExecutor

__all__ = ["history_events", "load_history", "parse_until"]

_CHUNK = 2000


def parse_until(text: str) -> int:
    """UTC epoch seconds of a date (New York midnight) or an ISO-8601 date-time (naive = New York)."""
    try:
        when = parse_time(text.strip(), "until")
    except InputError as exc:
        raise ValueError(exc.message) from None
    return int(when.timestamp())


def history_events() -> dict[str, pd.DataFrame]:
    """The year's event sources, sorted by event time: ``departures`` and ``weather``."""
    return {"departures": departures(load_flights()), "weather": load_weather()}


def load_history(
    executor: StreamingExecutor,
    until: int,
    since: int | None = None,
    *,
    events: dict[str, pd.DataFrame] | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Replay events with time in ``[since, until)`` into ``executor``; accepted count per source.

    ``since`` defaults to what each source still needs (``until`` minus its retention). Call again
    with ``since`` = the previous ``until`` to move the store forward hour by hour, like a stream.
    ``progress(source, n)`` is called after each chunk of ``n`` events.
    """
    fs = executor.feature_set
    sources = events if events is not None else history_events()
    accepted: dict[str, int] = {}
    for source in fs.sources:
        frame = sources[source.name]
        times = frame[source.time_column]
        start = until - fs.retention_seconds(source.name) if since is None else since
        window = frame[(times >= start) & (times < until)]
        count = 0
        for lo in range(0, len(window), _CHUNK):
            chunk = window.iloc[lo : lo + _CHUNK]
            count += executor.observe_many(source.name, chunk)
            if progress is not None:
                progress(source.name, len(chunk))
        accepted[source.name] = count
    return accepted
