"""A request for the flight feature set at a time: its New York calendar fields follow from it.

A plain module rather than conftest.py, imported as ``tests.shared.features.flight_requests``."""

from __future__ import annotations

from typing import Any

import pandas as pd


def flight_request(sched_ts: int, **fields: Any) -> dict[str, Any]:
    """AA from JFK to ATL at ``sched_ts`` unless ``fields`` say otherwise."""
    local = pd.Timestamp(sched_ts, unit="s", tz="UTC").tz_convert("America/New_York")
    calendar = {"year": local.year, "month": local.month, "day": local.day, "hour": local.hour}
    base = {"carrier": "AA", "origin": "JFK", "dest": "ATL", "flight": 1, "distance": 500.0}
    return {**base, **calendar, "minute": local.minute, "sched_ts": sched_ts, **fields}
