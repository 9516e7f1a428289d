"""Batch pattern benchmark: score the whole year (336,776 flights) into HBase end to end.

Stages (features, inference, writes, log) are timed by the scorer itself; "end to end" is the whole
``BatchScorer.score`` call (the publish gate is timed on its own line). The same-run baseline is a raw
happybase ``table.batch(batch_size=...)`` put of exactly the same rows and cells into a fresh table,
from as many writer processes as the pattern uses (``--writers``), so the write ratio says how much
the pattern's write path costs over the bare client; a one-connection raw put is printed for scale.
Heavy imports live inside ``main``: writer processes are spawned, and a spawned child re-imports
this file.

    .venv/bin/python bench/batch.py [--version v1] [--rounds 3] [--batch-size 2000] [--writers 2]
                                    [--from 2013-01-01] [--to 2013-12-31] [--plot batch.png]

``--from``/``--to`` narrow the scored dates (a month for a quick look; the published numbers are the
whole year's).
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from patterns.batch_db.hbase_store import HBaseStore
    from shared.predictor import Predictor


def _model(version: str | None) -> Predictor:
    from shared.example.flights import FLIGHT_FEATURES
    from shared.predictor import Predictor
    from shared.registry import Registry

    registry = Registry()
    if not registry.list():
        from shared.example.train import TrainingConfig, train

        print("no model registered: training one on January (max_iter 50)")
        train(TrainingConfig(train_months=(1,), valid_months=(2,), max_iter=50), registry=registry)
    model = registry.get(version) if version else registry.latest()
    return Predictor(model, FLIGHT_FEATURES.fingerprint())


def _raw_shard(host: str, port: int, table: str, batch_size: int, rows: list[tuple[bytes, bytes]]) -> None:
    import happybase

    conn = happybase.Connection(host, port, timeout=120_000)
    with conn.table(table).batch(batch_size=batch_size) as b:
        for key, value in rows:
            b.put(key, {b"s:p": value})
    conn.close()


def _raw_put(store: HBaseStore, table: str, rows: list[tuple[bytes, bytes]], writers: int) -> float:
    from shared import settings

    store.connection.create_table(table, {"s": {"max_versions": 1}})
    host, port = settings.hbase_thrift()
    n = len(rows)
    with ProcessPoolExecutor(writers, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(time.sleep, [0.0] * writers))  # processes up before the clock starts
        start = time.perf_counter()
        shards = [rows[i * n // writers : (i + 1) * n // writers] for i in range(writers)]
        futures = [pool.submit(_raw_shard, host, port, table, store.batch_size, s) for s in shards]
        for f in futures:
            f.result()
        return time.perf_counter() - start


def _raw_puts(
    store: HBaseStore, table: str, rows: list[tuple[bytes, bytes]], writers: int
) -> dict[str, float]:
    """The baseline puts of one round, from ``writers`` processes and from one, into fresh tables.

    They are not prediction tables (``store.tables()`` does not list them), so they go here.
    """
    try:
        raw = _raw_put(store, table, rows, writers)
        return {"raw": raw, "raw_one": _raw_put(store, table + "_1", rows, 1)}
    finally:
        existing = {t.decode() for t in store.connection.tables()}
        for name in (table, table + "_1"):
            if name in existing:
                store.connection.delete_table(name, disable=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", default=None)
    parser.add_argument("--batch-size", type=int, default=2000, help="rows per mutateRows call")
    parser.add_argument(
        "--chunk", type=int, default=50_000, help="rows per scoring chunk (written while the next is scored)"
    )
    parser.add_argument("--writers", type=int, default=2, help="parallel HBase writer connections")
    parser.add_argument("--log-fraction", type=float, default=1.0, help="share of rows in the prediction log")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median of each line is shown)")
    parser.add_argument("--from", dest="first", default="2013-01-01", help="first date scored (ISO)")
    parser.add_argument("--to", dest="last", default="2013-12-31", help="last date scored (ISO)")
    parser.add_argument("--plot", type=Path, help="also draw each stage's seconds to this PNG file")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    from patterns.batch_db.scoring import date_range, outside_example

    try:
        dates = date_range(args.first, args.last)
    except ValueError as err:
        parser.error(f"--from/--to: {err}")
    if outside := outside_example(dates):
        parser.error(f"--from/--to: {outside[0]} is outside the example's year (2013)")

    import numpy as np

    from patterns.batch_db.hbase_store import HBaseStore
    from patterns.batch_db.publishing import publish_run
    from patterns.batch_db.scoring import BatchScorer, _history
    from patterns.batch_db.store import row_key
    from shared.predlog import PredictionLog

    predictor = _model(args.version)
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    store = HBaseStore(prefix=prefix, batch_size=args.batch_size, writers=args.writers)
    try:
        scorer = BatchScorer(
            store,
            predictor,
            log=PredictionLog("batch_db") if args.log_fraction > 0 else None,
            log_fraction=args.log_fraction,
            write_batch=args.chunk,
        )
        # Reading the source tables (the flights CSV, the departure and weather history) is not
        # scoring: warm both caches first and report the time on its own line.
        load_start = time.perf_counter()
        scorer.inputs(dates)
        _history()
        load = time.perf_counter() - load_start
        raw_rows: list[tuple[bytes, bytes]] = []
        rounds: list[dict[str, float]] = []
        for r in range(args.rounds):
            measured: dict[str, float] = {}
            raw_first = r % 2 == 1  # round 0 scores first: its scores are the raw puts' rows
            if raw_first:
                measured |= _raw_puts(store, f"{prefix}_pred_raw{r}", raw_rows, args.writers)
            began = time.perf_counter()
            run = scorer.score(dates, force=True)
            measured |= run.timings | {"score": time.perf_counter() - began}
            if not raw_rows:  # same rows, same cells, same client, same batch size
                # A whole-table scan returns rows in row key order: sorted keys pair with its scores.
                keys = sorted(row_key(f) for f in scorer.inputs(dates)["flight_id"].astype(str))
                scores = np.asarray(store.scores(run.table))
                assert len(scores) == len(keys) == run.rows
                tail = f"|{run.version}|{run.feature_fingerprint}|{run.run_id}".encode()
                raw_rows = [
                    (k.encode(), repr(float(s)).encode() + tail) for k, s in zip(keys, scores, strict=True)
                ]
                # Point reads of a sample prove the pairing rather than trusting the scan order.
                for key, cell in raw_rows[:: max(1, len(raw_rows) // 20)]:
                    stored = store.get_prediction(run.table, key.decode().split("|", 1)[1])
                    assert stored is not None and repr(stored.score).encode() + tail == cell, key
            if not raw_first:
                measured |= _raw_puts(store, f"{prefix}_pred_raw{r}", raw_rows, args.writers)
            print(
                f"round {r + 1}/{args.rounds}: end to end {measured['score']:.2f} s, writes "
                f"{measured['writes']:.2f} s, raw put {measured['raw']:.2f} s",
                flush=True,
            )
            rounds.append(measured)
            if r + 1 < args.rounds:  # the next round writes a fresh table, as the raw puts do
                for table in store.tables():
                    store.drop_table(table)
        gate_start = time.perf_counter()
        result = publish_run(store, run)
        gate = time.perf_counter() - gate_start
    finally:
        for table in store.tables():
            store.drop_table(table)
        store.connection.delete_table(f"{prefix}_batch_meta", disable=True)
        store.close()

    def t(name: str) -> float:
        return float(np.median([m[name] for m in rounds]))

    n = run.rows
    rows = [
        ("load source tables (not in end to end)", load),
        ("features (offline executor)", t("features")),
        ("inference (onnxruntime)", t("inference")),
        ("writes (pattern, HBase; overlapped)", t("writes")),
        ("  of which after the last chunk", t("write_tail")),
        ("read back (8 dates x 25 flights)", t("read_back")),
        ("prediction log", t("log")),
        ("validate + quarantine", t("validate")),
        ("end to end (score)", t("score")),
        ("publish gate (scan + PSI) + pointer", gate),
        (f"baseline: raw happybase put, {args.writers} conn.", t("raw")),
        ("raw happybase put, 1 connection", t("raw_one")),
    ]
    print(
        f"\n{n:,} flights, model {run.version}, batch_size {args.batch_size}, writers {args.writers}, "
        f"published={result.ok}, median of {args.rounds} rounds"
    )
    print(f"{'stage':38s} {'seconds':>8s} {'rows/s':>10s}")
    for name, seconds in rows:
        print(f"{name:38s} {seconds:8.2f} {n / seconds:10,.0f}")
    ratios = sorted(m["raw"] / m["writes"] for m in rounds)
    print(f"\nend-to-end throughput: {n / t('score'):,.0f} rows/s (goal 50,000)")
    print(
        f"write throughput / raw happybase throughput: {t('raw') / t('writes'):.0%} (goal >= 80%; "
        f"rounds {', '.join(f'{x:.0%}' for x in ratios)})"
    )
    if args.plot:
        from _plot import bar_chart

        bar_chart(
            args.plot,
            f"Batch scoring of {n:,} flights into HBase, by stage (median of {args.rounds} rounds)",
            [(name.strip(), seconds) for name, seconds in rows],
            "seconds",
            baselines=[name for name, _ in rows if "raw happybase put" in name],
        )


if __name__ == "__main__":
    main()
