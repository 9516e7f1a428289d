"""Riding out a Kafka outage: retry a client call with bounded backoff, one log line per outage.

kafka-python gives up on a blocking call (commit, committed offsets, offset look-ups, a flush with
a timeout) after its own timeout and raises, although the client reconnects by itself once the
broker is back. A worker or reader that must outlive a broker restart retries such a call instead
of dying with it; a real error (a bad topic, a fenced producer) still raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["CALL_TIMEOUT_MS", "RECONNECT", "Outage", "Stopped", "transient_errors"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How long one blocking call may wait for Kafka before it is retried (and ``stop`` is checked).
CALL_TIMEOUT_MS = 5000
#: Client setting: reconnect at least every second. kafka-python's default backs off to 30 s, so a
#: client would go on waiting up to half a minute after the broker is back.
RECONNECT = {"reconnect_backoff_max_ms": 1000}


class Stopped(Exception):
    """``stop()`` became true while waiting for Kafka to come back."""


def transient_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable or restarting broker raises.

    ``RetriableError`` covers ``KafkaTimeoutError`` (also "Unable to bootstrap"),
    ``KafkaConnectionError``, ``NodeNotReadyError`` and the coordinator moving; kafka-python 3
    has no ``NoBrokersAvailable`` any more (older versions raise it for the same outage).
    """
    from kafka import errors

    extra = getattr(errors, "NoBrokersAvailable", None)
    return (errors.RetriableError, *((extra,) if isinstance(extra, type) else ()))


class Outage:
    """Backoff state of one client loop: the first failure is logged, and so is the recovery."""

    def __init__(self, who: str, first_s: float = 0.5, max_s: float = 5.0) -> None:
        self.who = who
        self.first_s = first_s
        self.max_s = max_s
        self.since: float | None = None
        self._delay = first_s

    def failed(self, what: str, exc: BaseException) -> float:
        """Record a failed call; returns how long to wait before the next try."""
        if self.since is None:
            self.since = time.monotonic()
            self._delay = self.first_s
            log.warning("%s: Kafka does not answer (%s: %s); retrying until it does", self.who, what, exc)
        delay, self._delay = self._delay, min(self._delay * 2, self.max_s)
        return delay

    def ok(self) -> None:
        if self.since is not None:
            log.warning("%s: Kafka answers again after %.1fs", self.who, time.monotonic() - self.since)
            self.since = None

    def call(self, what: str, fn: Callable[[], T], stop: Callable[[], bool] = lambda: False) -> T:
        """``fn()``, retried while it raises a transient error; ``Stopped`` once ``stop()``."""
        transient = transient_errors()
        while True:
            try:
                result = fn()
            except transient as exc:
                delay = self.failed(what, exc)
                if stop():
                    raise Stopped(what) from exc
                time.sleep(delay)
                continue
            self.ok()
            return result
