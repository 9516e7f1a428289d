"""The prediction log: JSON lines and Parquet frames read back as the same records."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES, REQUEST_FIELDS
from shared.features import OfflineExecutor
from shared.predlog import PredictionLog, iter_records


def _day() -> tuple[pd.DataFrame, pd.DataFrame]:

    flights = load_flights((1,))
    day = flights[flights["day"] == 2].reset_index(drop=True)
    sources = event_sources(flights)
    return day, OfflineExecutor(FLIGHT_FEATURES).compute(day[list(REQUEST_FIELDS)], sources)


def test_frame_and_lines_give_identical_records(tmp_path: Path) -> None:
    day, features = _day()
    assert features.isna().to_numpy().any()  # the day has NaN features (no prior departure, ...)
    ids = day["flight_id"].astype(str).tolist()
    scores = np.linspace(0.0, 1.0, len(day))

    lines = PredictionLog("lines", tmp_path)
    rows = list(zip(ids, day[list(REQUEST_FIELDS)].to_dict("records"), features.to_dict("records"),
                    scores.tolist(), strict=True))  # fmt: skip
    lines.write_many(rows, model_version="v1")
    lines.close()
    frame = PredictionLog("frame", tmp_path)
    path = frame.write_frame(ids, day[list(REQUEST_FIELDS)], features, scores, model_version="v1")
    frame.close()
    assert path.suffix == ".parquet" and not list(tmp_path.glob("**/*.tmp"))

    a, b = list(iter_records("lines", tmp_path)), list(iter_records("frame", tmp_path))
    assert len(a) == len(b) == len(day) > 500
    for x, y in zip(a, b, strict=True):
        assert x["request_id"] == y["request_id"] and x["model_version"] == y["model_version"] == "v1"
        assert x["request"] == y["request"]
        assert x["prediction"] == y["prediction"]
        assert x["features"].keys() == y["features"].keys()
        for name, value in x["features"].items():
            other = y["features"][name]
            assert (math.isnan(value) and math.isnan(other)) or value == other, name


def test_write_frame_refuses_mismatched_lengths(tmp_path: Path) -> None:
    day, features = _day()
    log = PredictionLog("frame", tmp_path)
    ids = day["flight_id"].astype(str).tolist()
    try:
        log.write_frame(ids[:-1], day, features, np.zeros(len(day)), model_version="v1")
    except ValueError as exc:
        assert "same length" in str(exc)
    else:
        raise AssertionError("a frame with one id missing was logged")
    assert not list(log.directory.glob("*.parquet"))
