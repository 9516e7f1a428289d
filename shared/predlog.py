"""The prediction log: what each serving path computed, for the consistency validator to re-check.

One JSON object per line: ``ts`` (wall clock), ``pattern``, ``model_version``, ``request_id``, the raw
``request`` fields, the ``features`` the path used (name -> value, NaN written as null) and the
``prediction``. Files rotate by size (``predictions-000001.jsonl``, …) under
``$MLPATTERNS_HOME/logs/<pattern>/``; the validator reads all of them.

Batch paths log a whole frame at once with ``write_frame``: one Parquet file per call
(``predictions-f<time_ns>.parquet``, columns ``request.<field>``, ``features.<name>`` beside the
scalar fields), because serialising 336,776 rows to JSON one by one cost as long as writing them to
HBase. ``iter_records`` returns both kinds as the same dicts.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared import settings

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

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

    def write_frame(
        self,
        request_ids: Sequence[str],
        requests: pd.DataFrame,
        features: pd.DataFrame,
        predictions: np.ndarray,
        *,
        model_version: str,
    ) -> Path:
        """Log a batch of rows as one Parquet file (same records as ``write_many``); returns its path."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = len(request_ids)
        if not (len(requests) == len(features) == len(predictions) == n):
            raise ValueError(
                f"write_frame: {n} ids, {len(requests)} requests, {len(features)} feature rows and "
                f"{len(predictions)} predictions must all have the same length"
            )
        columns: dict[str, Any] = {
            "ts": pa.array([time.time()] * n, pa.float64()),
            "pattern": pa.array([self.pattern] * n, pa.string()),
            "model_version": pa.array([model_version] * n, pa.string()),
            "request_id": pa.array(list(request_ids), pa.string()),
        }
        for name in requests.columns:
            columns[f"request.{name}"] = pa.array(requests[name].to_numpy(), from_pandas=True)
        for name in features.columns:
            columns[f"features.{name}"] = pa.array(features[name].to_numpy(dtype="float64"))
        columns["prediction"] = pa.array(predictions, pa.float64())
        path = self.directory / f"predictions-f{time.time_ns()}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(pa.table(columns), tmp)
        tmp.replace(path)  # readers never see a half-written file
        return path

    def close(self) -> None:
        with self._lock:
            self._file.close()


def iter_records(pattern: str | None = None, root: Path | None = None) -> Iterator[dict[str, Any]]:
    """Every logged record of one pattern (or all), oldest file first; null features come back as NaN."""
    base = root or settings.home() / "logs"
    patterns = [pattern] if pattern else sorted(p.name for p in base.glob("*") if p.is_dir())
    for name in patterns:
        directory = base / name
        files = [*directory.glob("predictions-*.jsonl"), *directory.glob("predictions-*.parquet")]
        for path in sorted(files, key=lambda p: p.stat().st_mtime_ns):
            yield from (_parquet_records(path) if path.suffix == ".parquet" else _jsonl_records(path))


def _jsonl_records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            record["features"] = {k: math.nan if v is None else v for k, v in record["features"].items()}
            yield record


def _parquet_records(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    columns = pq.read_table(path).to_pydict()
    request = [c for c in columns if c.startswith("request.")]
    features = [c for c in columns if c.startswith("features.")]
    for i, rid in enumerate(columns["request_id"]):
        yield {
            "ts": columns["ts"][i],
            "pattern": columns["pattern"][i],
            "model_version": columns["model_version"][i],
            "request_id": rid,
            "request": {c[8:]: _clean(columns[c][i]) for c in request},
            "features": {c[9:]: math.nan if columns[c][i] is None else columns[c][i] for c in features},
            "prediction": columns["prediction"][i],
        }
