"""Durable deployment state: one JSON document per target plus an append-only audit log.

Every change goes through ``StateStore.commit``: a compare-and-set on the target's revision that
writes the new state and its audit events in ONE transaction. A process killed at any point leaves
either the old or the new document, never a mix, so the live pointer is never ambiguous; two
processes racing on the same target get ``ConflictError`` instead of overwriting each other.

SQLite is the default (``<MLPATTERNS_HOME>/deploy.sqlite``); ``RedisStore`` keeps the same data in
Redis (WATCH/MULTI) for deployments driven from several machines.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from shared.deploy.state import AuditEvent, TargetState
from shared.errors import UserError

__all__ = ["ConflictError", "RedisStore", "SQLiteStore", "StateStore", "StateStoreError", "open_store"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class ConflictError(RuntimeError):
    """Someone else committed this target since we loaded it."""


class StateStoreError(UserError):
    """The deploy state named by the caller cannot be used: missing, not a database, unreachable."""


class StateStore(ABC):
    """Where target states and the audit log live."""

    @abstractmethod
    def load(self, target: str) -> TargetState:
        """The committed state (an empty one, revision 0, for a target never deployed)."""

    @abstractmethod
    def _write(self, state: TargetState, expected: int, events: Sequence[AuditEvent]) -> None:
        """Atomically: if the stored revision is ``expected``, store ``state`` and append ``events``."""

    @abstractmethod
    def audit(self, target: str, limit: int = 20) -> list[AuditEvent]:
        """The last ``limit`` audit events of ``target``, oldest first (none when ``limit <= 0``)."""

    @abstractmethod
    def targets(self) -> list[str]:
        """Targets with a stored state."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def commit(self, state: TargetState, events: Sequence[AuditEvent] = ()) -> TargetState:
        """Validate and persist ``state`` (loaded at ``state.revision``); return it at its new revision."""
        state.check()
        expected = state.revision
        new = TargetState.from_json(state.to_json())
        new.revision = expected + 1
        self._write(new, expected, events)
        return new


class SQLiteStore(StateStore):
    """SQLite file store; WAL mode so ``status`` can read while a deployment writes.

    ``synchronous="FULL"`` (default) fsyncs every commit, so a committed switch survives power loss;
    ``"NORMAL"`` keeps commits atomic (a crash still leaves the old or the new state) but may lose
    the last ones on power loss: enough for tests and demos, and much faster on slow disks.
    """

    def __init__(self, path: str | Path, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS deploy_state (
                target TEXT PRIMARY KEY, revision INTEGER NOT NULL, doc TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS deploy_audit (
                id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, at REAL NOT NULL,
                doc TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS deploy_audit_target ON deploy_audit (target, id);
            """
        )

    def load(self, target: str) -> TargetState:
        row = self._db.execute("SELECT doc FROM deploy_state WHERE target = ?", (target,)).fetchone()
        return TargetState.from_json(row[0]) if row else TargetState(target)

    def _write(self, state: TargetState, expected: int, events: Sequence[AuditEvent]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # take the write lock before reading the revision
        try:
            row = db.execute("SELECT revision FROM deploy_state WHERE target = ?", (state.target,)).fetchone()
            if (row[0] if row else 0) != expected:
                raise ConflictError(f"{state.target}: revision {row[0] if row else 0}, expected {expected}")
            db.execute(
                "INSERT INTO deploy_state (target, revision, doc) VALUES (?, ?, ?) "
                "ON CONFLICT(target) DO UPDATE SET revision = excluded.revision, doc = excluded.doc",
                (state.target, state.revision, state.to_json()),
            )
            db.executemany(
                "INSERT INTO deploy_audit (target, at, doc) VALUES (?, ?, ?)",
                [(e.target, e.at, json.dumps(e.to_dict())) for e in events],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def audit(self, target: str, limit: int = 20) -> list[AuditEvent]:
        if limit <= 0:  # SQLite reads LIMIT -1 as "no limit"
            return []
        rows = self._db.execute(
            "SELECT doc FROM deploy_audit WHERE target = ? ORDER BY id DESC LIMIT ?", (target, limit)
        ).fetchall()
        return [AuditEvent(**json.loads(r[0])) for r in reversed(rows)]

    def targets(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT target FROM deploy_state ORDER BY target")]

    def close(self) -> None:
        self._db.close()


class RedisStore(StateStore):
    """Redis store: ``{prefix}:state:{target}`` (JSON) and ``{prefix}:audit:{target}`` (a list).

    A Redis that does not answer within ``timeout_s`` (down, paused, cut off) raises
    ``StateStoreError``: the deployer then knows it is the store, not its own logic, that failed.
    """

    def __init__(self, url: str, prefix: str = "mlpatterns:deploy", timeout_s: float = 5.0) -> None:
        import redis  # lazy: only this store needs the client

        self._redis: Any = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._url = url
        self._prefix = prefix
        self._watch_error: type[Exception] = redis.WatchError
        self._down: tuple[type[Exception], ...] = (redis.ConnectionError, redis.TimeoutError)

    def _key(self, kind: str, target: str) -> str:
        return f"{self._prefix}:{kind}:{target}"

    @contextlib.contextmanager
    def _reached(self) -> Iterator[None]:
        try:
            yield
        except self._down as exc:
            raise StateStoreError(f"the deploy state at {self._url} does not answer: {exc}") from exc

    def load(self, target: str) -> TargetState:
        with self._reached():
            doc = self._redis.get(self._key("state", target))
        return TargetState.from_json(doc) if doc else TargetState(target)

    def _write(self, state: TargetState, expected: int, events: Sequence[AuditEvent]) -> None:
        key = self._key("state", state.target)
        with self._reached(), self._redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                doc = pipe.get(key)
                current = TargetState.from_json(doc).revision if doc else 0
                if current != expected:
                    raise ConflictError(f"{state.target}: revision {current}, expected {expected}")
                pipe.multi()
                pipe.set(key, state.to_json())
                pipe.sadd(f"{self._prefix}:targets", state.target)
                if events:
                    pipe.rpush(self._key("audit", state.target), *[json.dumps(e.to_dict()) for e in events])
                pipe.execute()
            except self._watch_error as exc:
                raise ConflictError(f"{state.target}: changed while committing") from exc

    def audit(self, target: str, limit: int = 20) -> list[AuditEvent]:
        if limit <= 0:  # LRANGE -0 -1 would be the whole list
            return []
        with self._reached():
            rows = self._redis.lrange(self._key("audit", target), -limit, -1)
        return [AuditEvent(**json.loads(r)) for r in rows]

    def targets(self) -> list[str]:
        with self._reached():
            return sorted(self._redis.smembers(f"{self._prefix}:targets"))

    def ping(self) -> None:
        """Raise ``redis.RedisError`` unless the server answers (the client itself connects lazily)."""
        self._redis.ping()

    def close(self) -> None:
        self._redis.close()


def open_store(location: str | Path | None = None, *, must_exist: bool = False) -> StateStore:
    """``redis://``, ``rediss://`` or ``unix://`` opens a RedisStore; anything else is a SQLite path
    (default: home/deploy.sqlite).

    ``must_exist`` is for commands that only read or undo: a missing SQLite file is then an error,
    not a new empty state, so a mistyped path does not look like a target never deployed. Every
    location that cannot be used raises ``StateStoreError`` saying why.
    """
    if location is None:
        from shared import settings

        path = settings.home() / "deploy.sqlite"
    else:
        text = str(location)
        if text.startswith(_REDIS_SCHEMES):
            return _open_redis(text)
        if ":" in text:  # a mistyped URL (redis:/host) would otherwise become a file of that name
            raise StateStoreError(
                f"deploy state {text!r} is neither a redis://, rediss:// or unix:// URL nor a "
                "SQLite path (a path may not contain ':')"
            )
        path = Path(text)
    if must_exist and not path.exists():
        raise StateStoreError(
            f"no deploy state at {path}: nothing was deployed with it "
            "(check --state, MLPATTERNS_DEPLOY_STATE or MLPATTERNS_HOME)"
        )
    return _open_sqlite(path)


def _open_sqlite(path: Path) -> SQLiteStore:
    if path.is_dir():
        raise StateStoreError(f"deploy state {path} is a directory: name a SQLite file in it")
    try:
        return SQLiteStore(path)
    except (sqlite3.Error, OSError) as exc:  # not a database, unwritable directory, ...
        raise StateStoreError(f"cannot open the deploy state {path} as SQLite: {exc}") from exc


def _open_redis(url: str) -> RedisStore:
    import redis

    try:
        store = RedisStore(url)
    except ValueError as exc:  # a malformed URL: redis://host:port-typo
        raise StateStoreError(f"deploy state {url!r} is not a valid Redis URL: {exc}") from exc
    try:
        store.ping()
    except redis.RedisError as exc:
        store.close()
        raise StateStoreError(f"cannot reach the deploy state at {url}: {exc}") from exc
    return store
