"""Interface tests of the batch pattern, each on the real HBase and on the embedded SQLite store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from patterns.batch_db import (
    BatchScorer,
    NotPublished,
    PredictionReader,
    PredictionTableStore,
    publish_run,
    retain,
    row_key,
)
from patterns.batch_db.cli import batch
from patterns.batch_db.store import date_of, salt
from shared.deploy.metrics import psi
from shared.example.data import load_flights
from shared.example.flights import FLIGHT_FEATURES, REQUEST_FIELDS
from shared.predictor import Predictor
from shared.predlog import iter_records

from .conftest import DAY, offline_features, offline_scores, stored_predictions


def _scorer(store: PredictionTableStore, predictor: Predictor, **kwargs: object) -> BatchScorer:
    return BatchScorer(store, predictor, progress=False, **kwargs)  # type: ignore[arg-type]


def _day_flights() -> pd.DataFrame:
    fl = load_flights((3,))
    return fl[fl["day"] == 1].reset_index(drop=True)


def test_row_key_is_salted_and_recomputable() -> None:
    fid = "20130301-UA1545-EWR-0515"
    assert row_key(fid) == f"{salt(fid)}|{fid}"
    assert date_of(fid) == "2013-03-01"
    salts = {salt(f) for f in _day_flights()["flight_id"]}
    assert len(salts) == 16  # a day's keys spread over every bucket


@pytest.mark.parametrize("write_batch", [50_000, 200])  # one chunk for the day, and five
def test_publish_then_read_through_pointer(
    store: PredictionTableStore, predictors: dict[str, Predictor], write_batch: int
) -> None:
    flights = _day_flights()
    reader = PredictionReader(store)
    with pytest.raises(NotPublished):
        reader.get(flights["flight_id"][0])

    run = _scorer(store, predictors["v1"], write_batch=write_batch).score([DAY])
    assert run.status == "written" and run.rows == len(flights) == run.inputs
    with pytest.raises(NotPublished):  # written but not published: invisible to readers
        reader.get(flights["flight_id"][0])

    result = publish_run(store, run)
    assert result.ok, result.reason
    assert store.pointer(DAY).table == run.table  # type: ignore[union-attr]

    # Every stored score is what the model gives on offline features computed independently here.
    expected = offline_scores(predictors["v1"], flights)
    assert len(store.scores(run.table)) == len(expected)
    wrong = {}
    for fid, want in expected.items():
        got = reader.get(fid)
        assert got is not None, fid
        if abs(got.score - want) > 1e-7:
            wrong[fid] = (got.score, want)
        assert (got.model_version, got.feature_fingerprint) == ("v1", FLIGHT_FEATURES.fingerprint())
        assert (got.run_id, got.table) == (run.run_id, run.table)
    assert not wrong, f"{len(wrong)} of {len(expected)} scores wrong, e.g. {list(wrong.items())[:3]}"
    assert reader.get("20130301-XX1-EWR-0000") is None  # published day, unknown flight


def test_switch_version_and_rollback(store: PredictionTableStore, predictors: dict[str, Predictor]) -> None:
    fid = _day_flights()["flight_id"][10]
    reader = PredictionReader(store)
    run1 = _scorer(store, predictors["v1"]).score([DAY])
    assert publish_run(store, run1).ok
    v1 = reader.get(fid)
    run2 = _scorer(store, predictors["v2"]).score([DAY])
    assert run2.table != run1.table
    result = publish_run(store, run2)
    assert result.ok, result.reason
    # The gate compared the v2 scores with the v1 scores that were live: recompute it from the tables.
    psi_check = next(c for c in result.checks if c.name == "psi")
    want = psi(store.scores(run1.table, [DAY]), store.scores(run2.table, [DAY]))
    assert want > 0  # the two models score the day differently
    assert psi_check.value == pytest.approx(want, rel=1e-12)
    v2 = reader.get(fid)
    assert v1 is not None and v2 is not None
    assert (v1.model_version, v2.model_version) == ("v1", "v2")
    assert v1.score != v2.score

    store.rollback([DAY])
    back = reader.get(fid)
    assert back == v1
    with pytest.raises(LookupError):
        store.rollback([DAY])  # history is used up


def test_gate_rejects_shifted_scores_and_keeps_pointer(
    store: PredictionTableStore, predictors: dict[str, Predictor]
) -> None:
    run1 = _scorer(store, predictors["v1"]).score([DAY])
    assert publish_run(store, run1).ok
    run2 = _scorer(store, predictors["v2"]).score([DAY])
    result = publish_run(store, run2, max_psi=0.0)  # any shift at all fails
    assert not result.ok
    assert [c.name for c in result.checks if not c.passed] == ["psi"]
    assert store.pointer(DAY).table == run1.table  # type: ignore[union-attr]
    assert store.load_run(run2.run_id).status == "rejected"  # type: ignore[union-attr]
    forced = publish_run(store, run2, max_psi=0.0, force=True)
    assert forced.ok and store.pointer(DAY).table == run2.table  # type: ignore[union-attr]


def test_gate_rejects_missing_rows(store: PredictionTableStore, predictors: dict[str, Predictor]) -> None:
    run = _scorer(store, predictors["v1"]).score([DAY])
    run.rows += 1  # the record claims a row the table does not hold
    result = publish_run(store, run)
    assert not result.ok and "row_count" in [c.name for c in result.checks if not c.passed]
    assert store.pointer(DAY) is None


def test_range_publish_is_one_pointer_write(
    store: PredictionTableStore, predictors: dict[str, Predictor]
) -> None:
    dates = ["2013-03-02", "2013-03-03", "2013-03-04"]
    run = _scorer(store, predictors["v1"]).score(dates)
    assert publish_run(store, run).ok
    pointers = store.pointers(dates)
    assert {p.table for p in pointers.values()} == {run.table}
    assert len({p.updated for p in pointers.values()}) == 1
    reader = PredictionReader(store)
    for date in dates:
        fid = load_flights((3,)).query(f"day == {int(date[-2:])}")["flight_id"].iloc[0]
        assert reader.get(fid).table == run.table  # type: ignore[union-attr]


def test_rerun_is_idempotent(store: PredictionTableStore, predictors: dict[str, Predictor]) -> None:
    scorer = _scorer(store, predictors["v1"])
    first = scorer.score([DAY])
    flights = _day_flights()["flight_id"]
    before = [store.get_prediction(first.table, f) for f in flights]
    reused = scorer.score([DAY])
    assert reused.run_id == first.run_id and reused.detail.startswith("reused")
    again = scorer.score([DAY], force=True)  # really rewrite every row
    assert again.table == first.table and again.detail == ""
    after = [store.get_prediction(again.table, f) for f in flights]
    assert after == before
    assert np.array_equal(np.sort(store.scores(first.table)), np.sort([p.score for p in before]))  # type: ignore[union-attr]


def test_quarantine_bad_rows(store: PredictionTableStore, predictors: dict[str, Predictor]) -> None:
    flights = _day_flights()
    bad = flights.copy()
    bad.loc[3, "carrier"] = ""
    bad.loc[7, "origin"] = "XYZ"
    bad.loc[11, "distance"] = -120.0
    bad.loc[12, "distance"] = -1.0
    run = _scorer(store, predictors["v1"], flights=bad).score([DAY])
    assert run.inputs == len(flights)
    assert run.quarantined == 4 and run.rows == len(flights) - 4
    assert run.reasons == {"missing carrier": 1, "unknown origin": 1, "negative distance": 2}
    stored = {fid: (reason, req) for fid, reason, req in store.quarantined(run.run_id)}
    assert stored[flights["flight_id"][7]][0] == "unknown origin"
    assert stored[flights["flight_id"][7]][1]["origin"] == "XYZ"
    assert stored[flights["flight_id"][11]][0] == "negative distance"
    assert len(stored) == 4
    result = publish_run(store, run)
    assert result.ok, result.reason  # quarantined rows are accounted for
    reader = PredictionReader(store)
    assert reader.get(flights["flight_id"][3]) is None
    assert reader.get(flights["flight_id"][4]) is not None


def test_quarantine_bad_flight_ids_and_duplicates(
    store: PredictionTableStore, predictors: dict[str, Predictor]
) -> None:
    flights = _day_flights()
    ids = flights["flight_id"]
    bad = flights.astype({"flight_id": object})
    bad.loc[2, "flight_id"] = None
    bad.loc[3, "flight_id"] = "not-a-flight"
    bad.loc[4, "flight_id"] = "20130302" + ids[4][8:]  # well formed, but its date is not the row's
    # Row 5 delivered twice, row 6 twice with a different distance: the first copy is the one scored.
    copies = pd.concat([bad.iloc[[5]], bad.iloc[[6]].assign(distance=9999.0), bad.iloc[[6]]])
    bad = pd.concat([bad, copies], ignore_index=True)
    run = _scorer(store, predictors["v1"], flights=bad).score([DAY])
    assert run.inputs == len(flights) + 3
    assert run.rows == len(flights) - 3 and run.quarantined == 6
    assert run.reasons == {
        "missing flight_id": 1,
        "malformed flight_id": 1,
        "flight_id date is not year/month/day": 1,
        "duplicate flight_id": 3,
    }
    stored = store.quarantined(run.run_id)
    assert len(stored) == 6  # every raw row kept, even those sharing a flight id
    n, distance = len(flights), flights["distance"]
    assert {(fid, reason, req["distance"]) for fid, reason, req in stored} == {
        ("", "missing flight_id", distance[2]),
        ("not-a-flight", "malformed flight_id", distance[3]),
        ("20130302" + ids[4][8:], "flight_id date is not year/month/day", distance[4]),
        (ids[5], "duplicate flight_id", distance[5]),
        (f"{ids[6]}#{n + 1}", "duplicate flight_id", 9999.0),  # input row n + 1
        (f"{ids[6]}#{n + 2}", "duplicate flight_id", distance[6]),
    }
    result = publish_run(store, run)
    assert result.ok, result.reason
    reader = PredictionReader(store)
    assert reader.get(ids[3]) is None and reader.get(ids[4]) is None
    clean = _scorer(store, predictors["v1"]).score([DAY])  # the same day without the bad rows
    for i in (5, 6, 7):
        got, want = reader.get(ids[i]), store.get_prediction(clean.table, ids[i])
        assert got is not None and want is not None and got.score == want.score


def test_retention_keeps_newest_and_live(
    store: PredictionTableStore, predictors: dict[str, Predictor]
) -> None:
    tables = []
    for i, version in enumerate(["v1", "v2", "v1", "v2"]):
        run = _scorer(store, predictors[version]).score([f"2013-03-0{i + 1}"])
        assert publish_run(store, run).ok
        tables.append(run.table)
    extra = _scorer(store, predictors["v2"]).score(["2013-03-01"])  # newest, not published
    dropped = retain(store, keep=1)
    # Newest is kept; the other four are live (each names a date), so none may go.
    assert dropped == []
    assert publish_run(store, extra).ok  # 03-01 now points at `extra`; tables[0] is only history
    dropped = retain(store, keep=1)
    assert dropped == [tables[0]]
    assert sorted(store.tables()) == sorted([extra.table, *tables[1:]])
    assert store.load_run(extra.run_id).status == "published"  # type: ignore[union-attr]
    with pytest.raises(LookupError):  # the previous table of 03-01 is gone
        store.rollback(["2013-03-01"])


def test_rollback_refuses_when_previous_table_was_dropped(
    store: PredictionTableStore, store_options: dict[str, object], predictors: dict[str, Predictor]
) -> None:
    # v1 (two days) -> v2 -> v1 again on DAY; the first table stays live for 03-02, so retention
    # drops only the middle one, which is exactly the table a rollback of DAY must go back to.
    first = _scorer(store, predictors["v1"]).score([DAY, "2013-03-02"])
    assert publish_run(store, first).ok
    middle = _scorer(store, predictors["v2"]).score([DAY])
    assert publish_run(store, middle, force=True).ok
    last = _scorer(store, predictors["v1"]).score([DAY])
    assert publish_run(store, last, force=True).ok
    assert store.pointer(DAY).history == [middle.table, first.table]  # type: ignore[union-attr]
    assert retain(store, keep=1) == [middle.table]

    with pytest.raises(LookupError, match=f"previous table {middle.table} was dropped by retention"):
        store.rollback([DAY])
    assert store.pointer(DAY).table == last.table  # type: ignore[union-attr]  # not skipped to v1

    flags = ["--store", str(store_options["kind"]), "--prefix", str(store_options["prefix"])]
    env = {"MLPATTERNS_HBASE_THRIFT_PORT": str(store_options["port"])} if "port" in store_options else {}
    out = CliRunner().invoke(batch, ["rollback", "--date", DAY, *flags], env=env)
    assert out.exit_code == 1, out.output
    assert f"Error: {DAY}: previous table {middle.table} was dropped by retention" in out.output
    assert store.pointer(DAY).table == last.table  # type: ignore[union-attr]


def test_prediction_log_records_what_was_served(
    store: PredictionTableStore, predictors: dict[str, Predictor], tmp_path: object
) -> None:
    from pathlib import Path

    from shared.predlog import PredictionLog

    root = Path(str(tmp_path)) / "logs"
    run = _scorer(store, predictors["v1"], log=PredictionLog("batch_db", root=root)).score([DAY])
    records = list(iter_records("batch_db", root=root))
    assert len(records) == run.rows
    ids = [r["request_id"] for r in records]
    flights = _day_flights().set_index("flight_id", drop=False)
    assert sorted(ids) == sorted(flights["flight_id"]) and {r["model_version"] for r in records} == {"v1"}
    requests = pd.DataFrame([r["request"] for r in records], index=pd.Index(ids, name="flight_id"))
    want_requests = flights.loc[ids, list(REQUEST_FIELDS)]
    pd.testing.assert_frame_equal(requests[list(REQUEST_FIELDS)], want_requests, check_dtype=False)
    assert all(set(r["features"]) == set(FLIGHT_FEATURES.names) for r in records)
    logged = np.array([[r["features"][n] for n in FLIGHT_FEATURES.names] for r in records], np.float64)
    offline = offline_features(flights).set_index(flights.index).loc[ids, list(FLIGHT_FEATURES.names)]
    np.testing.assert_allclose(logged, offline.to_numpy(np.float64), rtol=1e-12, atol=0, equal_nan=True)
    stored = stored_predictions(store, run.table, ids)
    served = {fid: None if p is None else p.score for fid, p in stored.items()}
    assert served == pytest.approx({r["request_id"]: r["prediction"] for r in records}, abs=1e-12)


def test_scores_written_against_the_wrong_flights_are_never_published(
    store: PredictionTableStore, predictors: dict[str, Predictor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every count, every score and their distribution are right; only the pairing of scores with
    flights is broken (shifted by one within each chunk). The read-back refuses it, even forced."""
    real_put = store.put_predictions

    def shifted(table: str, ids, scores: np.ndarray, meta) -> None:  # type: ignore[no-untyped-def]
        real_put(table, ids, np.roll(scores, 1), meta)

    monkeypatch.setattr(store, "put_predictions", shifted)
    run = _scorer(store, predictors["v1"], write_batch=200).score([DAY])
    assert run.status == "written" and run.rows == len(_day_flights())
    assert run.read_back["rows"] == 25 and run.read_back["mismatched"] >= 20
    assert sorted(store.scores(run.table)) == sorted(
        offline_scores(predictors["v1"], _day_flights()).values()
    )
    result = publish_run(store, run, force=True)
    assert not result.ok and store.pointer(DAY) is None
    failed = [c for c in result.checks if not c.passed]
    assert [c.name for c in failed] == ["read_back"]
    assert "of 25 sampled rows differ" in failed[0].detail and "recomputed" in failed[0].detail
    assert store.load_run(run.run_id).status == "rejected"  # type: ignore[union-attr]


def test_an_honest_run_reads_back_every_sampled_row(
    store: PredictionTableStore, predictors: dict[str, Predictor]
) -> None:
    fl = load_flights((3,))
    week = fl[fl["day"] <= 10].reset_index(drop=True)
    run = _scorer(store, predictors["v1"], flights=week).score([f"2013-03-{d:02d}" for d in range(1, 11)])
    assert run.read_back == {"rows": 8 * 25, "mismatched": 0, "example": ""}
    check = next(c for c in publish_run(store, run).checks if c.name == "read_back")
    assert check.passed and check.detail == "200 sampled rows scored again equal the stored rows"
