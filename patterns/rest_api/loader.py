"""The cut-off of the history the online store is materialised from.

``StreamingExecutor.observe_history`` (shared) replays departures and weather before the cut-off
through the late-event policy and eviction, so the store ends in the state a live stream would have
left it in. Only the events that can still matter are replayed: those in ``[until - retention,
until)`` per source, where retention = lead + longest window + allowed lateness. Requests with
``sched_ts`` in ``[until - 1 h, until + 1 h)`` then get exactly the offline executor's features
(their feature time, an hour before, is within the loaded history).
"""

from __future__ import annotations

from patterns.rest_api.schemas import InputError, parse_time

__all__ = ["parse_until"]


def parse_until(text: str) -> int:
    """UTC epoch seconds of a date (New York midnight) or an ISO-8601 date-time (naive = New York)."""
    try:
        when = parse_time(text.strip(), "until")
    except InputError as exc:
        raise ValueError(exc.message) from None
    return int(when.timestamp())
