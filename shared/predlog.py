"""The prediction log: what each serving path computed, for the consistency validator to re-check.

One JSON object per line: ``ts`` (wall clock), ``pattern``, ``model_version``, ``request_id``, the raw
``request`` fields, the ``features`` the path used (name -> value, NaN written as null) and the
``prediction``. Files rotate by size (``predictions-000001.jsonl``, …) under
``$MLPATTERNS_HOME/logs/<pattern>/``; the validator reads all of them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from shared import settings

__all__ = ["PredictionLog", "iter_records", "log_dir"]


def log_dir(pattern: str, root: Path | None = None) -> Path:
    return (root or settings.home() / "logs") / pattern


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


class PredictionLog:
    """Append-only, size-rotated JSON-lines log of served predictions (thread-safe)."""

    def __init__(self, pattern: str, root: Path | None = None, max_bytes: int = 64 << 20) -> None:
        self.pattern = pattern
        self.directory = log_dir(pattern, root)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        existing = sorted(self.directory.glob("predictions-*.jsonl"))
        self._index = int(existing[-1].stem.split("-")[1]) if existing else 1
        self._file = self._open()

    def _open(self) -> Any:
        return open(
            self.directory / f"predictions-{self._index:06d}.jsonl", "a", buffering=1, encoding="utf-8"
        )

    def write(
        self,
        *,
        model_version: str,
        request_id: str,
        request: Mapping[str, Any],
        features: Mapping[str, float],
        prediction: float,
    ) -> None:
        self.write_many([(request_id, request, features, prediction)], model_version=model_version)

    def write_many(
        self, rows: Sequence[tuple[str, Mapping[str, Any], Mapping[str, float], float]], *, model_version: str
    ) -> None:
        now = time.time()
        lines = "".join(
            json.dumps(
                {
                    "ts": now,
                    "pattern": self.pattern,
                    "model_version": model_version,
                    "request_id": rid,
                    "request": {k: _clean(v) for k, v in request.items()},
                    "features": {k: _clean(v) for k, v in features.items()},
                    "prediction": _clean(prediction),
                }
            )
            + "\n"
            for rid, request, features, prediction in rows
        )
        with self._lock:
            self._file.write(lines)
            if self._file.tell() >= self.max_bytes:
                self._file.close()
                self._index += 1
                self._file = self._open()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def iter_records(pattern: str | None = None, root: Path | None = None) -> Iterator[dict[str, Any]]:
    """Every logged record of one pattern (or all), oldest file first; null features come back as NaN."""
    base = root or settings.home() / "logs"
    patterns = [pattern] if pattern else sorted(p.name for p in base.glob("*") if p.is_dir())
    for name in patterns:
        for path in sorted((base / name).glob("predictions-*.jsonl")):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    record["features"] = {
                        k: math.nan if v is None else v for k, v in record["features"].items()
                    }
                    yield record
