"""Batch pattern benchmark: score the whole year (336,776 flights) into HBase end to end.

Stages (features, inference, writes, log) are timed by the scorer itself; the same-run baseline is a
raw happybase ``table.batch(batch_size=...)`` put of exactly the same rows into a fresh table, so
the write ratio says how much the pattern's write path costs over the bare client.

    .venv/bin/python bench/batch.py [--version v1] [--batch-size 2000] [--log-fraction 1.0]
"""

from __future__ import annotations

import argparse
import time
import uuid

import numpy as np

from patterns.batch_db.hbase_store import HBaseStore
from patterns.batch_db.publishing import publish_run
from patterns.batch_db.scoring import BatchScorer, date_range
from patterns.batch_db.store import row_key
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.predlog import PredictionLog
from shared.registry import Registry


def _model(version: str | None) -> Predictor:
    registry = Registry()
    if not registry.list():
        from shared.example.train import TrainingConfig, train

        print("no model registered: training one on January (max_iter 50)")
        train(TrainingConfig(train_months=(1,), valid_months=(2,), max_iter=50), registry=registry)
    model = registry.get(version) if version else registry.latest()
    return Predictor(model, FLIGHT_FEATURES.fingerprint())


def _raw_put(store: HBaseStore, table: str, keys: list[bytes], cells: list[dict[bytes, bytes]]) -> float:
    conn = store.connection
    conn.create_table(table, {"s": {"max_versions": 1}})
    t = conn.table(table)
    start = time.perf_counter()
    with t.batch(batch_size=store.batch_size) as b:
        for k, c in zip(keys, cells, strict=True):
            b.put(k, c)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", default=None)
    parser.add_argument("--batch-size", type=int, default=2000, help="rows per mutateRows call")
    parser.add_argument("--log-fraction", type=float, default=1.0, help="share of rows in the prediction log")
    args = parser.parse_args()

    predictor = _model(args.version)
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    store = HBaseStore(prefix=prefix, batch_size=args.batch_size)
    try:
        scorer = BatchScorer(
            store,
            predictor,
            log=PredictionLog("batch_db") if args.log_fraction > 0 else None,
            log_fraction=args.log_fraction,
            write_batch=50_000,
        )
        dates = date_range("2013-01-01", "2013-12-31")
        scorer.inputs(dates)  # warm the flights cache: loading the CSV is not part of scoring
        began = time.perf_counter()
        run = scorer.score(dates, force=True)
        scored = time.perf_counter() - began
        gate_start = time.perf_counter()
        result = publish_run(store, run)
        gate = time.perf_counter() - gate_start

        # Same rows, same cells, same client, same batch size: the bare happybase put.
        ids = scorer.inputs(dates)["flight_id"].astype(str).tolist()
        scores = np.asarray(store.scores(run.table))
        assert len(scores) == len(ids) == run.rows
        v, f, r = run.version.encode(), run.feature_fingerprint.encode(), run.run_id.encode()
        keys = [row_key(fid).encode() for fid in ids]
        cells = [{b"s:p": repr(float(s)).encode(), b"s:v": v, b"s:f": f, b"s:r": r} for s in scores]
        raw = _raw_put(store, f"{prefix}_pred_raw", keys, cells)
    finally:
        for table in store.tables():
            store.drop_table(table)
        store.connection.delete_table(f"{prefix}_batch_meta", disable=True)
        store.close()

    n = run.rows
    t = run.timings
    rows = [
        ("features (offline executor)", t["features"]),
        ("inference (onnxruntime)", t["inference"]),
        ("writes (pattern, HBase)", t["writes"]),
        ("prediction log", t["log"]),
        ("validate + quarantine", t["validate"]),
        ("end to end (score)", scored),
        ("publish gate (scan + PSI) + pointer", gate),
        ("baseline: raw happybase batch put", raw),
    ]
    print(f"\n{n:,} flights, model {run.version}, batch_size {args.batch_size}, published={result.ok}")
    print(f"{'stage':38s} {'seconds':>8s} {'rows/s':>10s}")
    for name, seconds in rows:
        print(f"{name:38s} {seconds:8.2f} {n / seconds:10,.0f}")
    print(f"\nend-to-end throughput: {n / scored:,.0f} rows/s (goal 50,000)")
    print(f"write throughput / raw happybase throughput: {raw / t['writes']:.0%} (goal >= 80%)")


if __name__ == "__main__":
    main()
