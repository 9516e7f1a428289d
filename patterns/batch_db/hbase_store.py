"""HBase, the database of record for batch predictions, through happybase (Thrift 1).

Layout (``<prefix>`` namespaces a checkout or a test):

- ``<prefix>_pred_<from>_<to>_<version>_<run>``: one table per scoring run, family ``s``:
  ``s:p`` score (``repr`` of the float: exact round trip), ``s:v`` model version, ``s:f`` feature
  fingerprint, ``s:r`` run id. Row key ``<salt>|<flight_id>`` (see ``store.py``).
- ``<prefix>_batch_meta``: row ``pointers`` (family ``p``, one column per date), rows
  ``run:<id>`` (family ``r``), ``meta:<key>`` (family ``m``) and ``q:<run>|<flight_id>`` (family
  ``q``: quarantined inputs). A publish is one ``put`` on the ``pointers`` row: HBase applies all
  columns of a single-row mutation atomically, so every date of a run moves together.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from patterns.batch_db.store import (
    SALT_BUCKETS,
    Prediction,
    PredictionTableStore,
    RunRecord,
    row_key,
)

__all__ = ["HBaseStore"]

_P, _V, _F, _R = b"s:p", b"s:v", b"s:f", b"s:r"
_POINTERS = b"pointers"


class HBaseStore(PredictionTableStore):
    """``PredictionTableStore`` on HBase via happybase; ``batch_size`` rows per Thrift ``mutateRows``.

    Host and port default to ``shared.settings.hbase_thrift()`` (``MLPATTERNS_HBASE_THRIFT_PORT``).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        prefix: str = "mlp",
        batch_size: int = 2000,
        timeout_ms: int = 120_000,
    ) -> None:
        import happybase

        from shared import settings

        default_host, default_port = settings.hbase_thrift()
        host, port = host or default_host, port or default_port
        self.prefix = prefix
        self.batch_size = batch_size
        self._conn = happybase.Connection(host, port, timeout=timeout_ms, autoconnect=True)
        self._meta_name = f"{prefix}_batch_meta"
        if self._meta_name.encode() not in self._conn.tables():
            with contextlib.suppress(Exception):  # AlreadyExists when another process raced us
                self._conn.create_table(
                    self._meta_name, {"p": {"max_versions": 1}, "r": {"max_versions": 1},
                                      "m": {"max_versions": 1}, "q": {"max_versions": 1}}
                )  # fmt: skip
        self._meta = self._conn.table(self._meta_name)

    @property
    def connection(self) -> Any:
        """The happybase connection (the benchmark uses it for its raw-put baseline)."""
        return self._conn

    def _check(self, name: str) -> str:
        if not name.startswith(f"{self.prefix}_pred_"):
            raise ValueError(f"not a prediction table of prefix {self.prefix!r}: {name!r}")
        return name

    # -- prediction tables --------------------------------------------------------------------------

    def create_table(self, name: str) -> None:
        if name not in self.tables():
            with contextlib.suppress(Exception):
                self._conn.create_table(self._check(name), {"s": {"max_versions": 1}})

    def drop_table(self, name: str) -> None:
        if name in self.tables():
            self._conn.delete_table(self._check(name), disable=True)

    def tables(self) -> list[str]:
        start = f"{self.prefix}_pred_"
        return sorted(n for n in (t.decode() for t in self._conn.tables()) if n.startswith(start))

    def put_predictions(
        self, table: str, flight_ids: Sequence[str], scores: np.ndarray, meta: Mapping[str, str]
    ) -> None:
        v, f, r = meta["version"].encode(), meta["fingerprint"].encode(), meta["run_id"].encode()
        t = self._conn.table(self._check(table))
        # repr() of a Python float is the shortest string that round-trips exactly.
        with t.batch(batch_size=self.batch_size) as b:
            for fid, s in zip(flight_ids, scores.tolist(), strict=True):
                b.put(row_key(fid).encode(), {_P: repr(s).encode(), _V: v, _F: f, _R: r})

    def get_prediction(self, table: str, flight_id: str) -> Prediction | None:
        row = self._conn.table(self._check(table)).row(row_key(flight_id).encode())
        if not row:
            return None
        return Prediction(
            flight_id,
            _float(row.get(_P)),
            row.get(_V, b"").decode(),
            row.get(_F, b"").decode(),
            row.get(_R, b"").decode(),
            table,
        )

    def scores(self, table: str, dates: Sequence[str] | None = None) -> np.ndarray:
        t = self._conn.table(self._check(table))
        prefixes: list[bytes | None] = [None]
        if dates is not None:
            compact = [d.replace("-", "") for d in dates]
            prefixes = [f"{s:x}|{d}".encode() for s in range(SALT_BUCKETS) for d in compact]
        values: list[float] = []
        for prefix in prefixes:
            # Every row has s:v; asking for it too means a row whose score is missing still shows up.
            scan = t.scan(row_prefix=prefix, columns=[_P, _V], batch_size=5000)
            values.extend(_float(data.get(_P)) for _, data in scan)
        return np.asarray(values, dtype=np.float64)

    # -- runs, quarantine, meta -------------------------------------------------------------------------

    def save_run(self, run: RunRecord) -> None:
        self._meta.put(f"run:{run.run_id}".encode(), {b"r:doc": run.to_json().encode()})

    def load_run(self, run_id: str) -> RunRecord | None:
        row = self._meta.row(f"run:{run_id}".encode(), columns=[b"r:doc"])
        return RunRecord.from_json(row[b"r:doc"].decode()) if row else None

    def runs(self) -> list[RunRecord]:
        records = [
            RunRecord.from_json(d[b"r:doc"].decode())
            for _, d in self._meta.scan(row_prefix=b"run:", columns=[b"r:doc"])
        ]
        return sorted(records, key=lambda r: (r.created, r.run_id))

    def delete_run(self, run_id: str) -> None:
        keys = [k for k, _ in self._scan_quarantine(run_id)]
        with self._meta.batch() as b:
            for k in keys:
                b.delete(k)
            b.delete(f"run:{run_id}".encode())

    def quarantine(self, run_id: str, rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        with self._meta.batch(batch_size=self.batch_size) as b:
            for fid, reason, request in rows:
                doc = json.dumps(dict(request), default=str).encode()
                b.put(f"q:{run_id}|{fid}".encode(), {b"q:reason": reason.encode(), b"q:request": doc})

    def quarantined(self, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (k.decode().split("|", 1)[1], d[b"q:reason"].decode(), json.loads(d[b"q:request"]))
            for k, d in self._scan_quarantine(run_id)
        ]

    def _scan_quarantine(self, run_id: str) -> Iterator[tuple[bytes, dict[bytes, bytes]]]:
        yield from self._meta.scan(row_prefix=f"q:{run_id}|".encode(), columns=[b"q"])

    def get_meta(self, key: str) -> str | None:
        row = self._meta.row(f"meta:{key}".encode(), columns=[b"m:v"])
        return row[b"m:v"].decode() if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._meta.delete(f"meta:{key}".encode())
        else:
            self._meta.put(f"meta:{key}".encode(), {b"m:v": value.encode()})

    # -- pointers -----------------------------------------------------------------------------------------

    def _read_pointers(self, dates: Sequence[str] | None) -> dict[str, str]:
        columns = None if dates is None else [f"p:{d}".encode() for d in dates]
        if columns == []:
            return {}
        row = self._meta.row(_POINTERS, columns=columns or [b"p"])
        return {k.decode()[2:]: v.decode() for k, v in row.items()}

    def _write_pointers(self, cells: Mapping[str, str]) -> None:
        # One put on one row = one atomic mutateRow: all dates move together.
        self._meta.put(_POINTERS, {f"p:{d}".encode(): v.encode() for d, v in cells.items()})

    def close(self) -> None:
        self._conn.close()


def _float(raw: bytes | None) -> float:
    if raw is None:
        return float("nan")
    try:
        return float(raw)
    except ValueError:
        return float("nan")
