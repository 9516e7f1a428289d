"""Where batch predictions live: versioned prediction tables, run records, quarantine and pointers.

``PredictionTableStore`` is the storage interface; ``HBaseStore`` (the database of record, through
happybase/Thrift) and ``SQLiteStore`` (embedded default for the quick start) implement it with the
same semantics. Each scoring run writes one table that nobody reads until a pointer names it.

Pointers: one cell per scheduled date (``date -> {"table", "history"}``). ``publish`` rewrites the
cells of every date a run covers in ONE atomic write (a single-row mutation in HBase, one
transaction in SQLite), so a reader sees either the old table or the new one for every date, never
a mix and never a half-written table. ``history`` keeps the tables that were live before, newest
first: ``rollback`` pops it.

Row key: ``<salt>|<flight_id>``, e.g. ``7|20130101-UA1545-EWR-0515``. ``flight_id`` starts with
the date, so unsalted keys of a day arrive in increasing order and every write of a run would hit
the last region of the table (one region server doing all the work). The salt (one hex digit of
crc32(flight_id)) spreads them over 16 key ranges that a cluster pre-splits on; a reader recomputes
it from the flight id, and a per-date scan is 16 short prefix scans (``<salt>|<yyyymmdd>``).
"""

from __future__ import annotations

import json
import os
import re
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from shared.errors import UserError

__all__ = [
    "FLIGHT_ID_PATTERN",
    "HISTORY_DEPTH",
    "RUN_ID_LENGTH",
    "InvalidPrefix",
    "Pointer",
    "Prediction",
    "PredictionTableStore",
    "RunRecord",
    "StoreUnavailable",
    "checked_prefix",
    "date_of",
    "open_store",
    "prediction_table",
    "prediction_table_pattern",
    "read_timeout_ms",
    "row_key",
    "salt",
]

#: How many previously live tables each date's pointer remembers for rollback.
HISTORY_DEPTH = 10
SALT_BUCKETS = 16
#: Hex digits of a run id (``BatchScorer.run_id``), the last segment of a prediction table's name.
RUN_ID_LENGTH = 10


#: ``YYYYMMDD-<carrier><flight>-<origin>-<HHMM>`` (``shared.example.data.flight_id``): the date
#: prefix is what the salted keys, the per-date scans and the reader's pointer lookup rely on.
FLIGHT_ID_PATTERN = r"\d{8}-[A-Z0-9]+-[A-Z]{3}-\d{4}"


class InvalidPrefix(UserError, ValueError):
    """A table prefix the store cannot use in a table name (a caller's mistake, not a bug)."""


class StoreUnavailable(UserError):
    """The store's server could not be reached or stopped answering (after the one retry of a read).

    A ``UserError``: not a bug of the code but a server to start or a port to fix, so a command
    prints its message (which names the address and the cause) as one ``Error:`` line.
    """


#: Seconds a reader waits for one HBase answer unless ``MLPATTERNS_HBASE_READ_TIMEOUT`` says
#: otherwise: a point read takes milliseconds, and a paused server should fail the lookup quickly.
READ_TIMEOUT_S = 5.0


def read_timeout_ms(seconds: float | None = None) -> int:
    """The socket timeout of readers, in ms: ``seconds``, else ``$MLPATTERNS_HBASE_READ_TIMEOUT``
    (seconds, default ``READ_TIMEOUT_S``). Writers keep ``HBaseStore``'s long default."""
    from shared import settings

    if seconds is None:
        seconds = settings.env_float("MLPATTERNS_HBASE_READ_TIMEOUT", READ_TIMEOUT_S, 0.01, 3600)
    if not seconds > 0:  # 0 would mean "no timeout" to the Thrift socket
        raise ValueError(f"read timeout must be > 0 seconds, got {seconds}")
    return max(1, round(seconds * 1000))


_PREFIX = re.compile(r"[A-Za-z0-9_]+")


def checked_prefix(prefix: str) -> str:
    """``prefix`` when it can start a table name in every backend, else ``InvalidPrefix``.

    One rule for all (SQL identifiers are the narrowest): a prefix that works on the embedded store
    works on HBase, and a character HBase gives a meaning (``:`` names a namespace) is refused.
    """
    if not _PREFIX.fullmatch(prefix):
        raise InvalidPrefix(f"prefix must be letters, digits and _: {prefix!r}")
    return prefix


def prediction_table(prefix: str, dates: Sequence[str], version: str, run_id: str) -> str:
    """``<prefix>_pred_<from>_<to>_<version>_<run id>``: the name of a run's table."""
    safe = re.sub(r"[^A-Za-z0-9]", "", version) or "model"
    return f"{prefix}_pred_{dates[0].replace('-', '')}_{dates[-1].replace('-', '')}_{safe}_{run_id}"


def prediction_table_pattern(prefix: str) -> re.Pattern[str]:
    """What ``prediction_table`` names under ``prefix`` look like, to be matched whole.

    A prefix may contain ``_pred_`` (``team`` and ``team_pred``), so a bare ``startswith`` would let
    ``team`` list, and retention drop, the other prefix's tables. No segment after the prefix holds
    a ``_``, so a match has exactly the prefix's underscores plus five, which no other prefix's
    prediction table starting with ``<prefix>_pred_`` can have; the hex run id rules out the
    ``_batch_*`` metadata tables (``team_pred_20130101_20130101_batch_meta`` under ``team``).
    """
    segments = rf"\d{{8}}_\d{{8}}_[A-Za-z0-9]+_[0-9a-f]{{{RUN_ID_LENGTH}}}"
    return re.compile(rf"{re.escape(prefix)}_pred_{segments}")


def salt(flight_id: str) -> str:
    """One hex digit derived from the flight id (stable across processes, unlike ``hash``)."""
    return format(zlib.crc32(flight_id.encode()) % SALT_BUCKETS, "x")


def row_key(flight_id: str) -> str:
    return f"{salt(flight_id)}|{flight_id}"


def date_of(flight_id: str) -> str:
    """ISO date of a flight id (``20130101-...`` -> ``2013-01-01``)."""
    d = flight_id[:8]
    if len(d) != 8 or not d.isdigit():
        raise ValueError(f"not a flight id: {flight_id!r} (expected YYYYMMDD-CARRIERFLIGHT-ORIGIN-HHMM)")
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


@dataclass(frozen=True)
class Prediction:
    """One stored prediction, as a reader gets it."""

    flight_id: str
    score: float
    model_version: str
    feature_fingerprint: str
    run_id: str
    table: str


@dataclass
class Pointer:
    """The live table of one date and the tables that were live before it (newest first)."""

    date: str
    table: str | None
    history: list[str] = field(default_factory=list)
    updated: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"table": self.table, "history": self.history, "updated": self.updated})

    @classmethod
    def from_json(cls, date: str, text: str) -> Pointer:
        d = json.loads(text)
        return cls(date, d.get("table"), list(d.get("history", [])), float(d.get("updated", 0.0)))


@dataclass
class RunRecord:
    """One scoring run: which table it wrote, for which dates and model, and how far it got.

    ``status``: ``writing`` (rows going in; a killed run stays here), ``written`` (complete, not
    live), ``published`` (a pointer named it at least once), ``rejected`` (failed the gate).
    """

    run_id: str
    table: str
    dates: list[str]
    version: str
    model_sha256: str
    feature_fingerprint: str
    status: str = "writing"
    inputs: int = 0
    rows: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    detail: str = ""
    #: ``patterns.batch_db.readback``: sampled rows scored again and read back (rows, mismatched)
    read_back: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        return cls(**json.loads(text))


class PredictionTableStore(ABC):
    """Storage for batch predictions. ``prefix`` namespaces every table so checkouts and tests can
    share one server. Implementations provide the primitives; pointer logic lives here once."""

    prefix: str

    # -- prediction tables --------------------------------------------------------------------------

    @abstractmethod
    def create_table(self, name: str) -> None:
        """Create an empty prediction table (no-op if it exists)."""

    @abstractmethod
    def drop_table(self, name: str) -> None:
        """Delete a prediction table and its rows (no-op if it does not exist)."""

    @abstractmethod
    def tables(self) -> list[str]:
        """Names of every prediction table under this prefix (``prediction_table_pattern``)."""

    def _prediction_table(self, name: str) -> str:
        """``name`` when it is a prediction table of this prefix, else ``ValueError`` (a table created
        under any other name would be invisible to ``tables()``, hence to retention)."""
        if not prediction_table_pattern(self.prefix).fullmatch(name):
            raise ValueError(f"not a prediction table of prefix {self.prefix!r}: {name!r}")
        return name

    def begin_writes(self) -> None:  # noqa: B027 - an optional hook: doing nothing is the default
        """Hook: a run is about to write (a store may warm up connections or writer processes)."""

    @abstractmethod
    def put_predictions(
        self, table: str, flight_ids: Sequence[str], scores: np.ndarray, meta: Mapping[str, str]
    ) -> None:
        """Write one batch of rows; ``meta`` (model version, feature fingerprint, run id) goes on every
        row. Re-writing a row with the same values is harmless (runs are idempotent)."""

    @abstractmethod
    def get_prediction(self, table: str, flight_id: str) -> Prediction | None: ...

    @abstractmethod
    def scores(self, table: str, dates: Sequence[str] | None = None) -> np.ndarray:
        """Every stored score (NaN where a row's score is missing or unreadable), optionally of some dates."""

    @abstractmethod
    def scores_by_date(self, table: str) -> dict[str, np.ndarray]:
        """Every stored score of ``table`` (as ``scores``) by the ISO date of its flight, in one scan:
        a date the table holds no row for is absent."""

    # -- run records, quarantine, small metadata ------------------------------------------------------

    @abstractmethod
    def save_run(self, run: RunRecord) -> None: ...

    @abstractmethod
    def load_run(self, run_id: str) -> RunRecord | None: ...

    @abstractmethod
    def runs(self) -> list[RunRecord]:
        """Every run record, oldest first."""

    @abstractmethod
    def quarantine(self, run_id: str, rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Store rejected input rows as (flight id, reason, raw request fields)."""

    @abstractmethod
    def quarantined(self, run_id: str) -> list[tuple[str, str, dict[str, Any]]]: ...

    @abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str | None) -> None: ...

    # -- pointer primitives ---------------------------------------------------------------------------

    @abstractmethod
    def _read_pointers(self, dates: Sequence[str] | None) -> dict[str, str]:
        """date -> pointer JSON, for ``dates`` (all when None)."""

    @abstractmethod
    def _write_pointers(self, cells: Mapping[str, str]) -> None:
        """Write every (date -> pointer JSON) cell in ONE atomic operation."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # -- pointers (shared logic) ------------------------------------------------------------------------

    def pointer(self, date: str) -> Pointer | None:
        cell = self._read_pointers([date]).get(date)
        return Pointer.from_json(date, cell) if cell else None

    def pointers(self, dates: Sequence[str] | None = None) -> dict[str, Pointer]:
        return {d: Pointer.from_json(d, v) for d, v in sorted(self._read_pointers(dates).items())}

    def publish(self, table: str, dates: Sequence[str]) -> dict[str, Pointer]:
        """Point every date of ``dates`` at ``table`` in one atomic write; returns the new pointers."""
        current = self.pointers(dates)
        now = time.time()
        new: dict[str, Pointer] = {}
        for date in dates:
            old = current.get(date)
            history = list(old.history) if old else []
            if old and old.table and old.table != table:
                history.insert(0, old.table)
            if old and old.table == table:
                new[date] = old
                continue
            new[date] = Pointer(date, table, history[:HISTORY_DEPTH], now)
        changed = {d: p.to_json() for d, p in new.items() if current.get(d) is not p}
        if changed:
            self._write_pointers(changed)
        return new

    def rollback(self, dates: Sequence[str]) -> dict[str, Pointer]:
        """Point each date back at the table that was live before (atomically, for all dates).

        Raises ``LookupError`` (and moves no pointer) when a date has no previous table or when
        retention dropped it: skipping to an older table would serve a version nobody asked for.
        """
        current = self.pointers(dates)
        existing = set(self.tables())
        new: dict[str, Pointer] = {}
        for date in dates:
            old = current.get(date)
            if old is None or not old.history:
                raise LookupError(f"{date}: no previous table to roll back to")
            previous = old.history[0]
            if previous not in existing:
                raise LookupError(
                    f"{date}: previous table {previous} was dropped by retention: nothing to roll back to"
                )
            new[date] = Pointer(date, previous, old.history[1:], time.time())
        self._write_pointers({d: p.to_json() for d, p in new.items()})
        return new

    def unpublish(self, dates: Sequence[str]) -> None:
        """Readers of ``dates`` get nothing (the tables stay; history is kept for rollback)."""
        current = self.pointers(dates)
        cells = {}
        for date, old in current.items():
            history = ([old.table] if old.table else []) + old.history
            cells[date] = Pointer(date, None, history[:HISTORY_DEPTH], time.time()).to_json()
        if cells:
            self._write_pointers(cells)

    def live_tables(self) -> set[str]:
        return {p.table for p in self.pointers().values() if p.table}


def open_store(kind: str | None = None, *, prefix: str = "mlp", **options: Any) -> PredictionTableStore:
    """``hbase`` (host/port from settings unless given) or ``sqlite`` (``path`` or the default file).

    ``options`` go to the store: for HBase e.g. ``timeout_ms=read_timeout_ms()`` for a reader
    (SQLite ignores everything but ``path``).

    The default kind is ``$MLPATTERNS_BATCH_STORE`` or ``sqlite`` (the embedded quick start).
    """
    from shared import settings

    kind = (kind or os.environ.get("MLPATTERNS_BATCH_STORE", "sqlite")).lower()
    if kind == "hbase":
        from patterns.batch_db.hbase_store import HBaseStore

        host, port = settings.hbase_thrift()
        return HBaseStore(options.pop("host", host), int(options.pop("port", port)), prefix=prefix, **options)
    if kind == "sqlite":
        from patterns.batch_db.sqlite_store import SQLiteStore

        path = options.pop("path", settings.home() / "batch_db" / "predictions.sqlite")
        return SQLiteStore(path, prefix=prefix)
    raise ValueError(f"unknown store {kind!r}: use hbase or sqlite")
