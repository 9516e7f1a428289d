"""``BatchScorer`` on another feature set and with its own validation: the hooks a copy overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from patterns.batch_db import BatchScorer, open_store, validate_inputs
from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import OfflineExecutor
from shared.predictor import Predictor
from shared.registry import FingerprintMismatch, Registry
from tests.conftest import register_copy

from .conftest import DAY

#: The flight features in reverse order: another feature set over the same sources.
REVERSED = dataclasses.replace(
    FLIGHT_FEATURES, name="flight_delay_reversed", features=tuple(reversed(FLIGHT_FEATURES.features))
)


def _registered_for_reversed(src: Predictor, root: Path) -> Predictor:
    """``src``'s model registered again as trained on ``REVERSED`` (its scores are then nonsense,
    but every column must reach it in the reversed order the registration claims)."""
    version = register_copy(
        Registry(root),
        src.model,
        feature_set=REVERSED.name,
        feature_fingerprint=REVERSED.fingerprint(),
        feature_names=REVERSED.names,
    )
    return Predictor(version, REVERSED.fingerprint())


def test_a_scorer_on_another_feature_set_scores_and_logs_in_that_set_s_order(
    predictors: dict[str, Predictor], tmp_path: Path
) -> None:
    with pytest.raises(FingerprintMismatch, match="flight_delay_reversed"):
        BatchScorer(open_store("sqlite", path=tmp_path / "p.sqlite"), predictors["v1"], feature_set=REVERSED)
    predictor = _registered_for_reversed(predictors["v1"], tmp_path / "models")
    store = open_store("sqlite", prefix="hooks", path=tmp_path / "p.sqlite")
    sources = event_sources()
    scorer = BatchScorer(store, predictor, feature_set=REVERSED, sources=sources, progress=False)
    run = scorer.score([DAY])
    assert run.status == "written" and run.rows > 500 and run.read_back
    flights = scorer.inputs([DAY])
    expected = predictor.predict_proba(
        OfflineExecutor(REVERSED)
        .compute(flights[list(REVERSED.request_fields)], sources)
        .to_numpy(np.float32)
    )
    got = np.array([store.get_prediction(run.table, str(f)).score for f in flights["flight_id"]])  # type: ignore[union-attr]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    store.close()


def test_a_validate_hook_quarantines_the_rows_it_names(
    predictors: dict[str, Predictor], tmp_path: Path
) -> None:
    class LongHaulOnly(BatchScorer):
        def validate(self, frame: pd.DataFrame) -> pd.Series:
            reasons = validate_inputs(frame)
            short = (reasons == "") & (pd.to_numeric(frame["distance"]) < 1000)
            return reasons.mask(short, "short haul")

    flights = load_flights((3,))
    store = open_store("sqlite", prefix="hooks", path=tmp_path / "p.sqlite")
    run = LongHaulOnly(store, predictors["v1"], flights=flights, progress=False).score([DAY])
    day = flights[flights["day"] == 1].reset_index(drop=True)
    fine = validate_inputs(day) == ""
    long_haul = pd.to_numeric(day["distance"]) >= 1000
    assert run.reasons["short haul"] == int((fine & ~long_haul).sum()) > 100
    assert run.rows == int((fine & long_haul).sum()) > 100
    store.close()


def test_every_flight_of_the_year_passes_and_local_clock_written_as_utc_is_quarantined() -> None:
    """The rule that sched_ts is the local fields' time in New York holds for all 336,776 flights
    (DST days included), and catches the ETL slip of writing the local clock as UTC."""
    flights = load_flights()
    assert (validate_inputs(flights) == "").all()
    july = flights[(flights["month"] == 7) & (flights["day"] == 19)].copy()
    as_utc = pd.to_datetime(july[["year", "month", "day", "hour", "minute"]]).astype("int64") // 10**9
    july["sched_ts"] = as_utc.to_numpy()
    reasons = validate_inputs(july)
    assert (reasons == "sched_ts is not year/month/day/hour/minute in America/New_York").all()
