"""What identifies a run (its run id) and a prefix's tables, on the real HBase and on SQLite."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from patterns.batch_db import BatchScorer, PredictionTableStore, open_store, publish_run, retain
from patterns.batch_db.store import prediction_table
from shared.example.data import load_flights
from shared.predictor import Predictor

from .conftest import DAY


def _day_flights() -> pd.DataFrame:
    fl = load_flights((3,))
    return fl[fl["day"] == 1].reset_index(drop=True)


def test_inputs_differing_only_in_flight_ids_are_different_runs(
    store: PredictionTableStore, predictors: dict[str, Predictor]
) -> None:
    a = _day_flights()
    b = a.copy()
    b.loc[0, "flight_id"] = b.loc[0, "flight_id"][:-4] + "2359"  # still well formed and dated right
    first = BatchScorer(store, predictors["v1"], flights=a, progress=False).score([DAY])
    second = BatchScorer(store, predictors["v1"], flights=b, progress=False).score([DAY])
    assert second.run_id != first.run_id and second.table != first.table
    assert not second.detail.startswith("reused")
    assert store.get_prediction(second.table, b.loc[0, "flight_id"]) is not None
    assert store.get_prediction(second.table, a.loc[0, "flight_id"]) is None
    assert publish_run(store, second).ok


def test_a_prefix_never_sees_the_tables_of_a_longer_prefix(
    store: PredictionTableStore, store_options: dict[str, object], request: pytest.FixtureRequest
) -> None:
    # ``team`` and ``team_pred``: every table of the second starts with ``team_pred_``.
    options = {k: v for k, v in store_options.items() if k not in ("kind", "prefix")}
    other = open_store(str(store_options["kind"]), prefix=f"{store.prefix}_pred", **options)
    try:
        theirs = prediction_table(other.prefix, [DAY], "v1", "0123456789")
        mine = prediction_table(store.prefix, [DAY], "v1", "abcdef0123")
        other.create_table(theirs)
        assert store.tables() == []  # not theirs, nor their _batch_* metadata tables
        assert retain(store, keep=1) == []
        store.create_table(mine)
        assert retain(store, keep=1) == [] and store.tables() == [mine]
        assert other.tables() == [theirs]
        with pytest.raises(ValueError, match="not a prediction table"):
            store.drop_table(theirs)
        assert other.tables() == [theirs]
    finally:
        leftovers = other.tables()
        if store_options["kind"] == "hbase":
            drop: Callable[[str, int, list[str]], None] = request.getfixturevalue("_hbase_drops")
            other.close()
            host, port = str(store_options["host"]), int(str(store_options["port"]))
            drop(host, port, [*leftovers, f"{other.prefix}_batch_meta"])
        else:
            for table in leftovers:
                other.drop_table(table)
            other.close()
