"""HBase, the database of record for batch predictions, through happybase (Thrift 1).

Layout (``<prefix>`` namespaces a checkout or a test):

- ``<prefix>_pred_<from>_<to>_<version>_<run>``: one table per scoring run, one cell per row,
  ``s:p`` = ``<score>|<model version>|<feature fingerprint>|<run id>`` (the score is the ``repr`` of
  the float: exact round trip). Row key ``<salt>|<flight_id>`` (see ``store.py``). One cell rather
  than four because the Thrift client pays per cell: 1 cell writes ~3x the rows/s of 4 cells.
- ``<prefix>_batch_meta``: row ``pointers`` (family ``p``, one column per date), rows
  ``run:<id>`` (family ``r``), ``meta:<key>`` (family ``m``) and ``q:<run>|<flight_id>`` (family
  ``q``: quarantined inputs). A publish is one ``put`` on the ``pointers`` row: HBase applies all
  columns of a single-row mutation atomically, so every date of a run moves together.

Outages: a call that meets a transport error (refused, reset, broken pipe, timed out) marks the
connection stale, and the next call opens a new one, so a Thrift restart is survived. Reads are
idempotent and are tried once more on a new connection; writes are never retried here, because a
write whose answer was lost may have been applied: retrying a pointer put could undo a publish that
another process made in between. Either way a failure is one ``StoreUnavailable`` naming the server.
Every write has an idempotent recovery one level up (rerun ``batch score``, rerun ``batch publish``).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import numpy as np

from patterns.batch_db.store import (
    SALT_BUCKETS,
    Prediction,
    PredictionTableStore,
    RunRecord,
    StoreUnavailable,
    checked_prefix,
    date_of,
    prediction_table_pattern,
    row_key,
)

__all__ = ["HBaseStore"]

_P = b"s:p"
_POINTERS = b"pointers"
#: The scorer's writes: a mutateRows of thousands of rows may take long on a busy region server.
WRITE_TIMEOUT_MS = 120_000
_T = TypeVar("_T")


class HBaseStore(PredictionTableStore):
    """``PredictionTableStore`` on HBase via happybase; ``batch_size`` rows per Thrift ``mutateRows``.

    Host and port default to ``shared.settings.hbase_thrift()`` (``MLPATTERNS_HBASE_THRIFT_PORT``).
    ``writers`` (default ``$MLPATTERNS_HBASE_WRITERS`` or 2) processes, each with its own
    connection, put prediction rows in parallel. Processes rather than threads: encoding Thrift
    mutations is Python work, and in threads it would fight the scorer's feature maths for the GIL.
    They start on ``begin_writes`` (the scorer calls it first, so their start-up overlaps scoring).

    ``timeout_ms`` bounds every socket call: readers pass ``store.read_timeout_ms()`` (a few seconds)
    so a paused server fails a lookup quickly instead of after the writers' two minutes.
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        prefix: str = "mlp",
        batch_size: int = 2000,
        timeout_ms: int = WRITE_TIMEOUT_MS,
        writers: int | None = None,
    ) -> None:
        import happybase
        from thriftpy2.transport import TTransportException

        from shared import settings

        prefix = checked_prefix(prefix)  # before connecting: a bad name is refused without a server
        # Bounded: each writer is a spawned process with its own Thrift connection.
        writers = writers or settings.env_int("MLPATTERNS_HBASE_WRITERS", 2, 1, 64)
        if writers < 1:
            raise ValueError(f"writers must be >= 1, got {writers}")
        default_host, default_port = settings.hbase_thrift()
        host, port = host or default_host, port or default_port
        self.prefix = prefix
        self.batch_size = batch_size
        self.writers = writers
        self._address = (host, port, timeout_ms)
        # BrokenPipe, ConnectionReset/Refused and socket timeouts are all OSError.
        self._broken: tuple[type[Exception], ...] = (TTransportException, OSError)
        self._conn = happybase.Connection(host, port, timeout=timeout_ms, autoconnect=False)
        self._stale = True  # opened by the first call, which reports a server that is down
        self._pool: ProcessPoolExecutor | None = None
        self._meta_name = f"{prefix}_batch_meta"
        self._meta = self._conn.table(self._meta_name)  # a handle: it uses whatever _conn holds
        if self._meta_name.encode() not in self._read(self._conn.tables):
            self._create(self._meta_name, ["p", "r", "m", "q"])

    @property
    def connection(self) -> Any:
        """The happybase connection (the benchmark uses it for its raw-put baseline)."""
        return self._conn

    def _check(self, name: str) -> str:
        return self._prediction_table(name)

    # -- connection: reopened after a transport error ----------------------------------------------

    def _reopen(self) -> None:
        # A new socket and client on the same Connection: happybase tables look up
        # ``connection.client`` on every call, so ``self._meta`` follows (as in happybase's pool).
        with contextlib.suppress(*self._broken):  # the old socket is dead: closing it may fail too
            self._conn.close()
        self._conn._refresh_thrift_client()
        self._conn.open()
        self._stale = False

    def _unavailable(self, exc: BaseException, then: str = "") -> StoreUnavailable:
        host, port, _ = self._address
        cause = getattr(exc, "message", None) or str(exc) or "no detail"
        what = f"{type(exc).__name__}: {cause}"
        return StoreUnavailable(f"HBase Thrift at {host}:{port} is unavailable ({what}){then}")

    def _read(self, call: Callable[[], _T]) -> _T:
        """``call()``, tried once more on a new connection after a transport error (reads only)."""
        try:
            if self._stale:
                self._reopen()
            return call()
        except self._broken:
            self._stale = True
        try:
            self._reopen()
            return call()
        except self._broken as exc:
            self._stale = True
            raise self._unavailable(exc) from exc

    def _write(self, call: Callable[[], _T]) -> _T:
        """``call()`` once: its answer lost, a write may still have been applied (see the module doc)."""
        try:
            if self._stale:
                self._reopen()  # nothing was sent yet: reconnecting is not a retry
            return call()
        except self._broken as exc:
            self._stale = True
            raise self._unavailable(exc, "; the write may or may not have been applied") from exc

    def _create(self, name: str, families: Sequence[str]) -> None:
        def create() -> None:
            try:
                self._conn.create_table(name, {f: {"max_versions": 1} for f in families})
            except self._broken:
                raise
            except Exception:  # AlreadyExists when another process raced us
                pass

        self._write(create)

    # -- prediction tables --------------------------------------------------------------------------

    def create_table(self, name: str) -> None:
        # Checked first: a name the store would never list is a caller's bug.
        if self._check(name) not in self.tables():
            self._create(name, ["s"])

    def drop_table(self, name: str) -> None:
        if self._check(name) in self.tables():
            self._write(lambda: self._conn.delete_table(name, disable=True))

    def tables(self) -> list[str]:
        pattern = prediction_table_pattern(self.prefix)
        return sorted(n for n in (t.decode() for t in self._read(self._conn.tables)) if pattern.fullmatch(n))

    def begin_writes(self) -> None:
        if self.writers > 1 and self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.writers,
                # spawn, not fork: the scorer's process runs onnxruntime and tqdm threads.
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_open_writer,
                initargs=(*self._address, self.batch_size),
            )
            for _ in range(self.writers):
                self._pool.submit(_ready)  # starts the processes without waiting for them

    def put_predictions(
        self, table: str, flight_ids: Sequence[str], scores: np.ndarray, meta: Mapping[str, str]
    ) -> None:
        self._check(table)
        tail = f"|{meta['version']}|{meta['fingerprint']}|{meta['run_id']}".encode()
        ids, values = list(flight_ids), scores.tolist()
        if self.writers == 1:
            self._write(lambda: _put(self._conn, table, ids, values, tail, self.batch_size))
            return
        self.begin_writes()
        assert self._pool is not None
        n, k = len(ids), self.writers
        futures = [
            self._pool.submit(_write_shard, table, ids[i * n // k : (i + 1) * n // k],
                              values[i * n // k : (i + 1) * n // k], tail)
            for i in range(k)
        ]  # fmt: skip
        try:
            for f in futures:
                f.result()  # the first failure fails the run: its pointer never moves
        except (*self._broken, BrokenProcessPool) as exc:  # type: ignore[misc]
            # Workers with dead connections (or a dead worker) are of no further use: the next
            # ``begin_writes`` starts fresh ones.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            raise self._unavailable(exc, "; writes to the run's table stopped") from exc

    def get_prediction(self, table: str, flight_id: str) -> Prediction | None:
        t = self._conn.table(self._check(table))
        row = self._read(lambda: t.row(row_key(flight_id).encode(), columns=[_P]))
        if not row:
            return None
        score, version, fingerprint, run_id = _cell(row[_P])
        return Prediction(flight_id, _float(score), version, fingerprint, run_id, table)

    def scores(self, table: str, dates: Sequence[str] | None = None) -> np.ndarray:
        return self._read(lambda: self._scores(table, dates))  # a broken scan restarts from the top

    def _scores(self, table: str, dates: Sequence[str] | None) -> np.ndarray:
        t = self._conn.table(self._check(table))
        prefixes: list[bytes | None] = [None]
        if dates is not None:
            compact = [d.replace("-", "") for d in dates]
            prefixes = [f"{s:x}|{d}".encode() for s in range(SALT_BUCKETS) for d in compact]
        values: list[float] = []
        for prefix in prefixes:
            scan = t.scan(row_prefix=prefix, columns=[_P], batch_size=5000)
            values.extend(_float(_cell(data[_P])[0]) for _, data in scan)
        return np.asarray(values, dtype=np.float64)

    def scores_by_date(self, table: str) -> dict[str, np.ndarray]:
        return self._read(lambda: self._scores_by_date(table))

    def _scores_by_date(self, table: str) -> dict[str, np.ndarray]:
        by_day: dict[bytes, list[float]] = {}
        for key, data in self._conn.table(self._check(table)).scan(columns=[_P], batch_size=5000):
            # ``<salt>|YYYYMMDD-...``: the day is the 8 bytes after the one-digit salt.
            by_day.setdefault(key[2:10], []).append(_float(_cell(data[_P])[0]))
        return {date_of(day.decode()): np.asarray(v, dtype=np.float64) for day, v in sorted(by_day.items())}

    # -- runs, quarantine, meta -------------------------------------------------------------------------

    def save_run(self, run: RunRecord) -> None:
        self._write(lambda: self._meta.put(f"run:{run.run_id}".encode(), {b"r:doc": run.to_json().encode()}))

    def load_run(self, run_id: str) -> RunRecord | None:
        row = self._read(lambda: self._meta.row(f"run:{run_id}".encode(), columns=[b"r:doc"]))
        return RunRecord.from_json(row[b"r:doc"].decode()) if row else None

    def runs(self) -> list[RunRecord]:
        rows = self._read(lambda: list(self._meta.scan(row_prefix=b"run:", columns=[b"r:doc"])))
        records = [RunRecord.from_json(d[b"r:doc"].decode()) for _, d in rows]
        return sorted(records, key=lambda r: (r.created, r.run_id))

    def quarantine(self, run_id: str, rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        self._write(lambda: self._quarantine(run_id, rows))

    def _quarantine(self, run_id: str, rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        with self._meta.batch(batch_size=self.batch_size) as b:
            for fid, reason, request in rows:
                doc = json.dumps(dict(request), default=str).encode()
                b.put(f"q:{run_id}|{fid}".encode(), {b"q:reason": reason.encode(), b"q:request": doc})

    def quarantined(self, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (k.decode().split("|", 1)[1], d[b"q:reason"].decode(), json.loads(d[b"q:request"]))
            for k, d in self._read(lambda: list(self._scan_quarantine(run_id)))
        ]

    def _scan_quarantine(self, run_id: str) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
        yield from self._meta.scan(row_prefix=f"q:{run_id}|".encode(), columns=[b"q"])

    def get_meta(self, key: str) -> str | None:
        row = self._read(lambda: self._meta.row(f"meta:{key}".encode(), columns=[b"m:v"]))
        return row[b"m:v"].decode() if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._write(lambda: self._meta.delete(f"meta:{key}".encode()))
        else:
            self._write(lambda: self._meta.put(f"meta:{key}".encode(), {b"m:v": value.encode()}))

    # -- pointers -----------------------------------------------------------------------------------------

    def _read_pointers(self, dates: Sequence[str] | None) -> dict[str, str]:
        columns = None if dates is None else [f"p:{d}".encode() for d in dates]
        if columns == []:
            return {}
        row = self._read(lambda: self._meta.row(_POINTERS, columns=columns or [b"p"]))
        return {k.decode()[2:]: v.decode() for k, v in row.items()}

    def _write_pointers(self, cells: Mapping[str, str]) -> None:
        # One put on one row = one atomic mutateRow: all dates move together. Not retried: between a
        # lost answer and a retry another publisher may have moved the pointer, which the retry undoes.
        encoded = {f"p:{d}".encode(): v.encode() for d, v in cells.items()}
        self._write(lambda: self._meta.put(_POINTERS, encoded))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._conn.close()


def _put(conn: Any, table: str, ids: Sequence[str], values: list[float], tail: bytes, batch: int) -> None:
    # repr() of a Python float is the shortest string that round-trips exactly.
    with conn.table(table).batch(batch_size=batch) as b:
        for fid, s in zip(ids, values, strict=True):
            b.put(row_key(fid).encode(), {_P: repr(s).encode() + tail})


# -- writer processes: one happybase connection each, opened by the pool's initializer --------------
_writer: dict[str, Any] = {}


def _open_writer(host: str, port: int, timeout_ms: int, batch_size: int) -> None:
    import happybase
    from thriftpy2.transport import TTransportException

    parent = os.getppid()

    def exit_with_parent() -> None:
        # A spawned worker holds both ends of its task queue, so it never sees EOF: if the scorer
        # is killed (SIGKILL mid-run), nothing else would ever stop it.
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=exit_with_parent, name="exit-with-parent", daemon=True).start()
    _writer["batch"] = batch_size
    try:
        _writer["conn"] = happybase.Connection(host, port, timeout=timeout_ms, autoconnect=True)
    except (TTransportException, OSError) as exc:
        # Raised here, the pool would print the worker's traceback on the scorer's terminal: the
        # first shard raises it instead, and the scorer reports it as ``StoreUnavailable``.
        _writer["error"] = exc


def _ready() -> bool:
    return "conn" in _writer


def _write_shard(table: str, ids: list[str], values: list[float], tail: bytes) -> None:
    if "error" in _writer:
        raise _writer["error"]
    _put(_writer["conn"], table, ids, values, tail, _writer["batch"])


def _cell(raw: bytes) -> tuple[str, str, str, str]:
    """``score|version|fingerprint|run`` -> its parts; the version may itself contain ``|``."""
    score, _, rest = raw.decode().partition("|")
    parts = rest.rsplit("|", 2)
    if len(parts) != 3:
        return score, "", "", ""
    return score, parts[0], parts[1], parts[2]


def _float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return float("nan")
