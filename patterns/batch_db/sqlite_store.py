"""The embedded store: every prediction table, run, pointer and quarantined row in one SQLite file.

Same semantics as HBase: a prediction table is a real SQLite table, the pointer cells of a publish
are written in one transaction, and WAL mode with ``synchronous=FULL`` keeps a committed pointer
through a crash (a killed run leaves at most an incomplete table nobody points at).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from patterns.batch_db.store import (
    Prediction,
    PredictionTableStore,
    RunRecord,
    checked_prefix,
    date_of,
    prediction_table_pattern,
    row_key,
)

__all__ = ["SQLiteStore"]


class SQLiteStore(PredictionTableStore):
    """``PredictionTableStore`` on one SQLite file (default: ``$MLPATTERNS_HOME/batch_db/``)."""

    def __init__(self, path: str | Path, prefix: str = "mlp") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.prefix = checked_prefix(prefix)
        # The scorer writes from its writer thread; SQLite here is built serialized
        # (sqlite3.threadsafety == 3), so sharing the connection across threads is safe.
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        p = prefix
        self._db.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS {p}_batch_pointers (date TEXT PRIMARY KEY, doc TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS {p}_batch_runs (run_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS {p}_batch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS {p}_batch_quarantine (
                run_id TEXT NOT NULL, flight_id TEXT NOT NULL, reason TEXT NOT NULL,
                request TEXT NOT NULL, PRIMARY KEY (run_id, flight_id));
            """
        )

    def _table(self, name: str) -> str:
        # The name goes into SQL unquoted: the pattern admits only letters, digits and _.
        return self._prediction_table(name)

    def create_table(self, name: str) -> None:
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table(name)} (key TEXT PRIMARY KEY, date TEXT NOT NULL,"
            " score REAL, version TEXT, fingerprint TEXT, run_id TEXT) WITHOUT ROWID"
        )

    def drop_table(self, name: str) -> None:
        self._db.execute(f"DROP TABLE IF EXISTS {self._table(name)}")

    def tables(self) -> list[str]:
        names = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        pattern = prediction_table_pattern(self.prefix)
        return sorted(r[0] for r in names if pattern.fullmatch(r[0]))

    def put_predictions(
        self, table: str, flight_ids: Sequence[str], scores: np.ndarray, meta: Mapping[str, str]
    ) -> None:
        version, fingerprint, run_id = meta["version"], meta["fingerprint"], meta["run_id"]
        rows = [
            (row_key(fid), date_of(fid), float(s), version, fingerprint, run_id)
            for fid, s in zip(flight_ids, scores.tolist(), strict=True)
        ]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(f"INSERT OR REPLACE INTO {self._table(table)} VALUES (?,?,?,?,?,?)", rows)

    def get_prediction(self, table: str, flight_id: str) -> Prediction | None:
        row = self._db.execute(
            f"SELECT score, version, fingerprint, run_id FROM {self._table(table)} WHERE key = ?",
            (row_key(flight_id),),
        ).fetchone()
        if row is None:
            return None
        score = float("nan") if row[0] is None else float(row[0])
        return Prediction(flight_id, score, row[1], row[2], row[3], table)

    def scores(self, table: str, dates: Sequence[str] | None = None) -> np.ndarray:
        sql = f"SELECT score FROM {self._table(table)}"
        args: list[str] = []
        if dates is not None:
            sql += f" WHERE date IN ({','.join('?' * len(dates))})"
            args = list(dates)
        values = [np.nan if r[0] is None else r[0] for r in self._db.execute(sql, args)]
        return np.asarray(values, dtype=np.float64)

    def scores_by_date(self, table: str) -> dict[str, np.ndarray]:
        by_date: dict[str, list[float]] = {}
        for date, score in self._db.execute(f"SELECT date, score FROM {self._table(table)}"):
            by_date.setdefault(date, []).append(np.nan if score is None else score)
        return {d: np.asarray(v, dtype=np.float64) for d, v in sorted(by_date.items())}

    def save_run(self, run: RunRecord) -> None:
        self._db.execute(
            f"INSERT OR REPLACE INTO {self.prefix}_batch_runs VALUES (?, ?)", (run.run_id, run.to_json())
        )

    def load_run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute(
            f"SELECT doc FROM {self.prefix}_batch_runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return RunRecord.from_json(row[0]) if row else None

    def runs(self) -> list[RunRecord]:
        docs = self._db.execute(f"SELECT doc FROM {self.prefix}_batch_runs")
        return sorted((RunRecord.from_json(r[0]) for r in docs), key=lambda r: (r.created, r.run_id))

    def quarantine(self, run_id: str, rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                f"INSERT OR REPLACE INTO {self.prefix}_batch_quarantine VALUES (?,?,?,?)",
                [(run_id, fid, reason, json.dumps(dict(req), default=str)) for fid, reason, req in rows],
            )

    def quarantined(self, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self._db.execute(
            f"SELECT flight_id, reason, request FROM {self.prefix}_batch_quarantine WHERE run_id = ?"
            " ORDER BY flight_id",
            (run_id,),
        )
        return [(r[0], r[1], json.loads(r[2])) for r in rows]

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute(f"SELECT value FROM {self.prefix}_batch_meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute(f"DELETE FROM {self.prefix}_batch_meta WHERE key = ?", (key,))
        else:
            self._db.execute(f"INSERT OR REPLACE INTO {self.prefix}_batch_meta VALUES (?, ?)", (key, value))

    def _read_pointers(self, dates: Sequence[str] | None) -> dict[str, str]:
        sql = f"SELECT date, doc FROM {self.prefix}_batch_pointers"
        args: list[str] = []
        if dates is not None:
            sql += f" WHERE date IN ({','.join('?' * len(dates))})"
            args = list(dates)
        return dict(self._db.execute(sql, args).fetchall())

    def _write_pointers(self, cells: Mapping[str, str]) -> None:
        with self._db:  # one transaction: every date moves, or none does
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                f"INSERT OR REPLACE INTO {self.prefix}_batch_pointers VALUES (?, ?)", list(cells.items())
            )

    def close(self) -> None:
        self._db.close()
