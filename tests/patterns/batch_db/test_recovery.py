"""A scoring run killed with SIGKILL mid-write leaves the pointer (and readers) on the previous
table; rerunning the same command completes the run and publishes it. Real subprocess, real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from patterns.batch_db import BatchScorer, PredictionReader, PredictionTableStore, publish_run
from shared import settings
from shared.predictor import Predictor

from .conftest import assert_scores_match, offline_scores

DATES = [f"2013-03-{d:02d}" for d in range(1, 11)]


def _cli(store_options: dict[str, object], *args: str) -> list[str]:
    flags = ["--store", str(store_options["kind"]), "--prefix", str(store_options["prefix"])]
    return [sys.executable, "-m", "patterns.batch_db", *args, *flags]


def _env(store_options: dict[str, object]) -> dict[str, str]:
    env = dict(os.environ, MLPATTERNS_HOME=os.environ["MLPATTERNS_HOME"])
    if store_options["kind"] == "hbase":
        env["MLPATTERNS_HBASE_THRIFT_PORT"] = str(store_options["port"])
    else:
        # The subprocess opens the default SQLite file of its home: point the test store there too.
        assert store_options["path"] == settings.home() / "batch_db" / "predictions.sqlite"
    return env


def _children(pid: int) -> set[int]:
    """Direct child processes of ``pid`` (Linux ``/proc``)."""
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as fh:
            found.update(int(c) for c in fh.read().split())
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as fh:
                if fh.read().split(") ", 1)[1][0] != "Z":
                    alive.add(p)
        except FileNotFoundError:
            pass
    return alive


def _has_rows(store: PredictionTableStore, table: str) -> bool:
    return table in store.tables() and len(store.scores(table, [DATES[0]])) > 0


def test_sigkill_mid_write_then_rerun(
    store: PredictionTableStore, store_options: dict[str, object], predictors: dict[str, Predictor]
) -> None:
    live = BatchScorer(store, predictors["v1"], progress=False).score(DATES)
    assert publish_run(store, live).ok
    probe = BatchScorer(store, predictors["v2"], progress=False)
    inputs = probe.inputs(DATES)
    target_run = probe.run_id(DATES, inputs)
    reader = PredictionReader(store)
    fid = str(inputs["flight_id"].iloc[0])
    before = reader.get(fid)
    assert before is not None and before.model_version == "v1"

    # Small chunks and batches make the write stage long enough to land the kill inside it.
    cmd = _cli(store_options, "score", "--from", DATES[0], "--to", DATES[-1], "--version", "v2",
               "--chunk", "200", "--batch-size", "20", "--log-fraction", "0")  # fmt: skip
    proc = subprocess.Popen(cmd, env=_env(store_options), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        table = None
        while time.monotonic() < deadline and proc.poll() is None:
            run = store.load_run(target_run)
            if run is not None and _has_rows(store, run.table):
                table = run.table
                break
            time.sleep(0.02)
        assert table is not None, f"never saw the run writing: {proc.communicate()}"
        writers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # HBase writes come from writer processes: they must not outlive the killed scorer.
    assert writers or store_options["kind"] != "hbase"
    deadline = time.monotonic() + 10
    while _alive(writers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(writers), f"writer processes outlived the killed scorer: {_alive(writers)}"

    killed = store.load_run(target_run)
    assert killed is not None and killed.status == "writing"
    assert 0 < len(store.scores(table)) < len(inputs)  # really killed mid-write
    assert {p.table for p in store.pointers(DATES).values()} == {live.table}
    assert reader.get(fid) == before

    # Other chunks than the killed run's (5 of them): every row must still get its own score.
    rerun = subprocess.run(
        _cli(store_options, "score", "--from", DATES[0], "--to", DATES[-1], "--version", "v2",
             "--chunk", "2000", "--log-fraction", "0"),
        env=_env(store_options), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    done = store.load_run(target_run)
    assert done is not None and done.status == "published" and done.table == table
    assert len(store.scores(table)) == len(inputs) == done.rows
    assert_scores_match(store, table, offline_scores(predictors["v2"], inputs), "v2")
    after = reader.get(fid)
    assert after is not None and after.model_version == "v2" and after.table == table
    assert store.pointer(DATES[0]).history == [live.table]  # type: ignore[union-attr]
