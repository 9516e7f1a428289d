"""The batch pattern's part of ``make demo``: score a day with v1, publish, switch to v2, roll back.

Runs on HBase when ``MLPATTERNS_BATCH_STORE=hbase`` (what ``make demo`` sets up), else on the
embedded SQLite file. Tables go under the prefix ``demo`` and are kept for inspection
(``mlpatterns batch runs --prefix demo``).
"""

from __future__ import annotations

from patterns.batch_db.publishing import publish_run, retain
from patterns.batch_db.reader import PredictionReader
from patterns.batch_db.scoring import BatchScorer
from patterns.batch_db.store import open_store
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.predlog import PredictionLog
from shared.registry import Registry

__all__ = ["run_demo"]

DAY = "2013-12-01"


def run_demo(versions: tuple[str, str] = ("v1", "v2"), store: str | None = None, day: str = DAY) -> None:
    """Score ``day`` with versions[0] and publish; score with versions[1], gate and switch; roll back."""
    backend = open_store(store, prefix="demo")
    registry = Registry()
    reader = PredictionReader(backend)
    print(f"batch_db demo on {type(backend).__name__} ({day})")
    flight = None
    for version in versions:
        predictor = Predictor(registry.get(version), FLIGHT_FEATURES.fingerprint())
        scorer = BatchScorer(backend, predictor, log=PredictionLog("batch_db"), progress=False)
        run = scorer.score([day])
        flight = flight or str(scorer.inputs([day])["flight_id"].iloc[0])
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in run.timings.items())
        print(f"  scored {run.rows} flights with {version} into {run.table} ({run.detail or stages})")
        result = publish_run(backend, run)
        for check in result.checks:
            print(f"    [{'ok' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
        print(f"  {'published: pointer -> ' + run.table if result.ok else 'NOT published: ' + result.reason}")
        _show(reader, flight)
    backend.rollback([day])
    print("  rolled back: pointer moved to the previous table")
    _show(reader, flight or "")
    dropped = retain(backend, keep=4)
    print(f"  retention (keep 4): dropped {len(dropped)} table(s)")
    backend.close()


def _show(reader: PredictionReader, flight_id: str) -> None:
    p = reader.get(flight_id)
    if p is None:
        print(f"    {flight_id}: no prediction")
    else:
        print(f"    read {flight_id}: p(delay) = {p.score:.4f}  model {p.model_version}  table {p.table}")
