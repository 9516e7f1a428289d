"""The example task's feature set: will a scheduled New York flight leave 15 minutes late or more?

The question is asked an hour ahead: everything here is known at ``t = sched_ts − 1 h``. That is
the schedule itself, the latest hourly weather report at the origin known by ``t`` (at minute 51 of
its hour, see ``WEATHER_REPORT_MINUTE``; stale after 3 h),
and how late the carrier's and the origin's flights that actually departed in the hour, 3 h and
24 h before ``t`` were. The hour matters: more than half the flights leave ahead of schedule (by
up to 43 minutes), so windows ending at ``sched_ts`` would hold the flight's own departure and its
label with it.
"""

from __future__ import annotations

import numpy as np

from shared.features.definitions import (
    AsOfFeature,
    Columns,
    EventSource,
    FeatureSet,
    RowFeature,
    WindowFeature,
    category_codes,
)

__all__ = [
    "CARRIERS",
    "DESTS",
    "FLIGHT_FEATURES",
    "LEAD_SECONDS",
    "LOCAL_ZONE",
    "ORIGINS",
    "REQUEST_FIELDS",
    "WEATHER_FIELDS",
]

CARRIERS = ("9E", "AA", "AS", "B6", "DL", "EV", "F9", "FL", "HA", "MQ", "OO", "UA", "US", "VX", "WN", "YV")
ORIGINS = ("EWR", "JFK", "LGA")
#: The zone of the three origins: a flight's year/month/day/hour/minute are its local time there.
LOCAL_ZONE = "America/New_York"
DESTS = (
    "ABQ", "ACK", "ALB", "ANC", "ATL", "AUS", "AVL", "BDL", "BGR", "BHM", "BNA", "BOS", "BQN", "BTV", "BUF",
    "BUR", "BWI", "BZN", "CAE", "CAK", "CHO", "CHS", "CLE", "CLT", "CMH", "CRW", "CVG", "DAY", "DCA", "DEN",
    "DFW", "DSM", "DTW", "EGE", "EYW", "FLL", "GRR", "GSO", "GSP", "HDN", "HNL", "HOU", "IAD", "IAH", "ILM",
    "IND", "JAC", "JAX", "LAS", "LAX", "LEX", "LGA", "LGB", "MCI", "MCO", "MDW", "MEM", "MHT", "MIA", "MKE",
    "MSN", "MSP", "MSY", "MTJ", "MVY", "MYR", "OAK", "OKC", "OMA", "ORD", "ORF", "PBI", "PDX", "PHL", "PHX",
    "PIT", "PSE", "PSP", "PVD", "PWM", "RDU", "RIC", "ROC", "RSW", "SAN", "SAT", "SAV", "SBN", "SDF", "SEA",
    "SFO", "SJC", "SJU", "SLC", "SMF", "SNA", "SRQ", "STL", "STT", "SYR", "TPA", "TUL", "TVC", "TYS", "XNA",
)  # fmt: skip

#: The raw fields a caller sends to ask for one prediction (local scheduled date and time + UTC epoch).
REQUEST_FIELDS = (
    "year",
    "month",
    "day",
    "hour",
    "minute",
    "carrier",
    "flight",
    "origin",
    "dest",
    "distance",
    "sched_ts",
)
WEATHER_FIELDS = ("temp", "humid", "wind_speed", "precip", "pressure", "visib")

_HOUR = 3600
#: Features are computed this long before the scheduled departure: longer than any flight leaves early.
LEAD_SECONDS = _HOUR
_WEATHER_TTL = 3 * _HOUR
_WINDOWS = {"1h": _HOUR, "3h": 3 * _HOUR, "24h": 24 * _HOUR}


def _hour(c: Columns) -> np.ndarray:
    return np.asarray(c["hour"], dtype=np.float64)


def _weekday(c: Columns) -> np.ndarray:
    # Monday = 0. Built with datetime64 arithmetic so it vectorises and works on one-row arrays.
    years = np.asarray(c["year"], dtype=np.int64) - 1970
    date = (
        years.astype("datetime64[Y]") + (np.asarray(c["month"], dtype=np.int64) - 1).astype("timedelta64[M]")
    ).astype("datetime64[D]") + (np.asarray(c["day"], dtype=np.int64) - 1).astype("timedelta64[D]")
    return ((date.astype(np.int64) + 3) % 7).astype(np.float64)


def _month(c: Columns) -> np.ndarray:
    return np.asarray(c["month"], dtype=np.float64)


def _carrier(c: Columns) -> np.ndarray:
    return category_codes(c["carrier"], CARRIERS)


def _origin(c: Columns) -> np.ndarray:
    return category_codes(c["origin"], ORIGINS)


def _dest(c: Columns) -> np.ndarray:
    return category_codes(c["dest"], DESTS)


def _distance(c: Columns) -> np.ndarray:
    return np.asarray(c["distance"], dtype=np.float64)


def _features() -> tuple[RowFeature | AsOfFeature | WindowFeature, ...]:
    rows: list[RowFeature | AsOfFeature | WindowFeature] = [
        RowFeature("hour", "int64", ("hour",), _hour, doc="scheduled local hour of departure"),
        RowFeature("weekday", "int64", ("year", "month", "day"), _weekday, doc="Monday = 0, local date"),
        RowFeature("month", "int64", ("month",), _month),
        RowFeature("carrier", "category", ("carrier",), _carrier, CARRIERS),
        RowFeature("origin", "category", ("origin",), _origin, ORIGINS),
        RowFeature("dest", "category", ("dest",), _dest, DESTS),
        RowFeature("distance", "float64", ("distance",), _distance, doc="miles"),
    ]
    rows += [
        AsOfFeature(
            f"wx_{field}",
            "weather",
            "origin",
            field,
            _WEATHER_TTL,
            doc="latest hourly report (known at :51) at the origin by t = sched - 1h; missing past 3 h",
        )
        for field in WEATHER_FIELDS
    ]
    for key in ("carrier", "origin"):
        for label, seconds in _WINDOWS.items():
            rows.append(
                WindowFeature(
                    f"{key}_dep_count_{label}",
                    "departures",
                    key,
                    "dep_delay",
                    "count",
                    seconds,
                    doc=f"flights of the same {key} that departed in [t-{label}, t), t = sched - 1h",
                )
            )
            rows.append(
                WindowFeature(
                    f"{key}_dep_delay_{label}",
                    "departures",
                    key,
                    "dep_delay",
                    "mean",
                    seconds,
                    doc="their mean departure delay (minutes); missing when none",
                )
            )
    return tuple(rows)


FLIGHT_FEATURES = FeatureSet(
    name="flight_delay",
    request_time="sched_ts",
    sources=(
        # A departure is known at its actual departure time; up to an hour late on the wire is accepted.
        EventSource(
            "departures", "dep_ts", ("carrier", "origin"), ("dep_delay",), allowed_lateness_seconds=_HOUR
        ),
        EventSource("weather", "obs_ts", ("origin",), WEATHER_FIELDS, allowed_lateness_seconds=_HOUR),
    ),
    features=_features(),
    request_fields=REQUEST_FIELDS,
    lead_seconds=LEAD_SECONDS,
)
