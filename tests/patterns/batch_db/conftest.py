"""Batch pattern fixtures: two small models in a temporary home, and the store under test.

``store`` is parametrized over the real HBase (the session ``hbase_server``) and the embedded
SQLite file, so every interface test runs on both. Each HBase test gets its own table prefix; its
tables are dropped afterwards, in the background.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from patterns.batch_db.cli import batch
from patterns.batch_db.store import Prediction, PredictionTableStore, open_store
from shared.example.data import event_sources
from shared.example.flights import FLIGHT_FEATURES, REQUEST_FIELDS
from shared.features import OfflineExecutor
from shared.predictor import Predictor
from shared.registry import Registry

#: A March day: the models below are trained on January/February, so these are unseen flights.
DAY = "2013-03-01"


@lru_cache(maxsize=1)
def _sources() -> dict[str, pd.DataFrame]:
    return event_sources()


def offline_features(flights: pd.DataFrame) -> pd.DataFrame:
    """Features of ``flights`` computed here, independently of the scorer: one ``OfflineExecutor``
    call over the whole departure history and weather (no chunks, no trimmed windows)."""
    return OfflineExecutor(FLIGHT_FEATURES).compute(
        flights[list(REQUEST_FIELDS)].reset_index(drop=True), _sources()
    )


def offline_scores(predictor: Predictor, flights: pd.DataFrame) -> dict[str, float]:
    """flight id -> the model's probability on the offline features of that flight."""
    proba = predictor.predict_proba(offline_features(flights).to_numpy(np.float32))
    return dict(zip(flights["flight_id"].astype(str), map(float, proba), strict=True))


def stored_predictions(
    store: PredictionTableStore, table: str, flight_ids: Iterable[str]
) -> dict[str, Prediction | None]:
    """flight id -> the row ``table`` holds for it (None when it holds none)."""
    return {fid: store.get_prediction(table, fid) for fid in flight_ids}


def assert_scores_match(
    store: PredictionTableStore, table: str, expected: dict[str, float], version: str
) -> None:
    """``table`` holds exactly the flights of ``expected``, each with its expected score."""
    assert len(store.scores(table)) == len(expected)
    wrong = {}
    for fid, got in stored_predictions(store, table, expected).items():
        if got is None or got.model_version != version or abs(got.score - expected[fid]) > 1e-7:
            wrong[fid] = (got, expected[fid])
    assert not wrong, f"{len(wrong)} of {len(expected)} stored rows wrong, e.g. {list(wrong.items())[:2]}"


@pytest.fixture(scope="session")
def batch_home(tmp_path_factory: pytest.TempPathFactory, copy_registry: Callable[[Path], Registry]) -> Path:
    """MLPATTERNS_HOME whose registry holds v1 and v2 (both trained on January, v2 with larger steps)."""
    home = tmp_path_factory.mktemp("batch_home")
    copy_registry(home)
    return home


@pytest.fixture(autouse=True)
def _home(batch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPATTERNS_HOME", str(batch_home))


@pytest.fixture(scope="session")
def registry(batch_home: Path) -> Registry:
    return Registry(batch_home / "registry")


@pytest.fixture(scope="session")
def predictors(registry: Registry) -> dict[str, Predictor]:
    return {v: Predictor(registry.get(v), FLIGHT_FEATURES.fingerprint()) for v in ("v1", "v2")}


@pytest.fixture(params=[pytest.param("hbase", marks=pytest.mark.servers), "sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_options(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, object]:
    """How to open the store under test (also handed to subprocesses as CLI flags)."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    if store_kind == "hbase":
        server = request.getfixturevalue("hbase_server")
        return {"kind": "hbase", "prefix": prefix, "host": server.host, "port": server.port}
    # The default file of MLPATTERNS_HOME, so CLI subprocesses of the test open the same one.
    home = tmp_path / "home"
    home.mkdir()
    (home / "registry").symlink_to(request.getfixturevalue("batch_home") / "registry")
    request.getfixturevalue("monkeypatch").setenv("MLPATTERNS_HOME", str(home))
    return {"kind": "sqlite", "prefix": prefix, "path": home / "batch_db" / "predictions.sqlite"}


@pytest.fixture(scope="session")
def _hbase_drops() -> Iterator[Callable[[str, int, list[str]], None]]:
    """``drop(host, port, tables)`` in the background: HBase takes a second or two to disable and
    delete a table, and no test waits on another's leftovers (each has its own prefix). Every
    drop has finished, and any that failed has raised, by the end of the session."""
    import happybase

    def drop(host: str, port: int, tables: list[str]) -> None:
        conn = happybase.Connection(host, port, autoconnect=True)
        try:
            existing = {t.decode() for t in conn.tables()}
            for name in tables:
                if name in existing:
                    conn.delete_table(name, disable=True)
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="hbase-drop") as pool:
        pending: list[Future[None]] = []
        yield lambda host, port, tables: pending.append(pool.submit(drop, host, port, tables))
        for future in pending:
            future.result()


@pytest.fixture
def store(store_options: dict[str, object], request: pytest.FixtureRequest) -> Iterator[PredictionTableStore]:
    options = dict(store_options)
    hbase = options["kind"] == "hbase"
    drop_later = request.getfixturevalue("_hbase_drops") if hbase else None
    backend = open_store(str(options.pop("kind")), prefix=str(options.pop("prefix")), **options)
    yield backend
    if drop_later is not None:
        tables = [*backend.tables(), f"{backend.prefix}_batch_meta"]
        backend.close()
        drop_later(str(store_options["host"]), int(str(store_options["port"])), tables)
        return
    for table in backend.tables():
        backend.drop_table(table)
    backend.close()


@pytest.fixture
def cli(store_options: dict[str, object]) -> Callable[..., Result]:
    """``cli("score", "--date", DAY)``: the batch group in-process, on the store under test."""
    flags = ["--store", str(store_options["kind"]), "--prefix", str(store_options["prefix"])]
    env = {"MLPATTERNS_HBASE_THRIFT_PORT": str(store_options["port"])} if "port" in store_options else {}

    def invoke(*args: str, env_extra: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(batch, [*args, *flags], env={**env, **(env_extra or {})})

    return invoke
