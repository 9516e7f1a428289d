"""The predictor glue, independent of any web framework: request -> features -> ONNX -> response.

``FlightDelayService`` has one hook per step, in the spirit of LitServe's ``LitAPI`` and KServe's
``Model``: ``decode_request`` (validate raw JSON), ``features`` (online feature vectors from the
store, one round trip for a whole batch), ``predict`` (onnxruntime) and ``encode_response``. The
FastAPI app (``app.py``) drives it through ``score_async``, whose store read is ``features_async``
(awaited, so the event loop keeps serving); the BentoML variant through ``score``. A subclass can
override any hook (``features`` and ``features_async`` together).

Every served row is written to the prediction log by a background thread, so the JSON encoding and
file I/O of logging stay off the request path.
"""

from __future__ import annotations

import logging
import math
import queue
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, urlencode

import numpy as np
import redis

from patterns.rest_api.schemas import FIELDS, PREDICT_BODY_DOC, FlightField, InputError, decode_flight
from shared.example.flights import FLIGHT_FEATURES
from shared.features import (
    EmbeddedStore,
    FeatureSet,
    OnlineExecutor,
    OnlineStore,
    RedisStore,
    RequestError,
)
from shared.predictor import Predictor
from shared.predlog import PredictionLog
from shared.registry import Registry

__all__ = ["MODEL_NAME", "FlightDelayService", "Prediction", "StoreUnavailable", "build_store"]

#: The model's name in the Open Inference Protocol and in logs.
MODEL_NAME = "flight_delay"
_log = logging.getLogger(__name__)
#: What a store read raises when the server is down or slow (redis-py wraps socket errors).
_STORE_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, redis.RedisError)


class StoreUnavailable(RuntimeError):
    """The online feature store did not answer (the request was fine; retry later)."""


@dataclass(frozen=True)
class Prediction:
    """One scored flight: the decoded raw fields, the feature row it used and the probability."""

    request_id: str
    request: Mapping[str, Any]
    features: np.ndarray
    probability: float


def build_store(kind: str, redis_url: str | None = None, prefix: str = "mlp") -> OnlineStore:
    """``embedded`` (in-process, empty until loaded) or ``redis`` at ``redis_url``.

    Redis gets short socket timeouts unless the URL sets its own, so a dead store makes readiness
    fail fast instead of hanging a request.
    """
    if kind == "embedded":
        return EmbeddedStore()
    if kind != "redis":
        raise ValueError(f"unknown store {kind!r}: expected 'redis' or 'embedded'")
    if not redis_url:
        from shared import settings

        redis_url = settings.redis_url()
    # The query is replaced as text: urlunsplit would turn "unix:///run/redis.sock" into
    # "unix:/run/redis.sock", which redis-py refuses.
    base, _, given = redis_url.partition("?")
    query = dict(parse_qsl(given))
    query.setdefault("socket_timeout", "2")
    query.setdefault("socket_connect_timeout", "1")
    return RedisStore(f"{base}?{urlencode(query)}", prefix=prefix)


def _request_id() -> str:
    # 128 random bits as 32 hex digits, like uuid4().hex, without a getrandom() system call per
    # request: an id only has to be unique, not unpredictable.
    return f"{random.getrandbits(128):032x}"


@contextmanager
def _feature_errors() -> Iterator[None]:
    """A bad field is the caller's 4xx; a store that does not answer is a 503 (retry later)."""
    try:
        yield
    except RequestError as exc:
        raise InputError(exc.field, str(exc)) from None
    except _STORE_ERRORS as exc:
        raise StoreUnavailable(f"feature store error: {type(exc).__name__}: {exc}") from exc


class _LogWriter:
    """Hands rows to ``PredictionLog.write_many`` from a daemon thread, in batches.

    A failed write (disk full, ...) is logged and its rows are dropped and counted in
    ``dropped_rows``; the thread keeps going, so serving and ``flush`` never hang on the log.
    """

    def __init__(self, log: PredictionLog, feature_names: Sequence[str]) -> None:
        self._log = log
        self._names = list(feature_names)
        self._queue: queue.SimpleQueue[tuple[str, list[Prediction]] | None] = queue.SimpleQueue()
        self._done = threading.Condition()
        self._queued = 0
        self._written = 0
        self.dropped_rows = 0
        self._thread = threading.Thread(target=self._run, name="predlog", daemon=True)
        self._thread.start()

    def put(self, model_version: str, rows: list[Prediction]) -> None:
        with self._done:
            self._queued += 1
        self._queue.put((model_version, rows))

    def _run(self) -> None:
        names = self._names
        while True:
            item = self._queue.get()
            pending: dict[str, list[Prediction]] = {}
            taken = 0
            while item is not None:
                pending.setdefault(item[0], []).extend(item[1])
                taken += 1
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            dropped = 0
            for version, rows in pending.items():
                try:
                    self._log.write_many(
                        [
                            (
                                p.request_id,
                                p.request,
                                dict(zip(names, p.features.tolist(), strict=True)),
                                p.probability,
                            )
                            for p in rows
                        ],
                        model_version=version,
                    )
                except Exception:
                    # Dying here would leave every later row queued in memory and flush waiting.
                    _log.exception("prediction log: %d rows of %s not written", len(rows), version)
                    dropped += len(rows)
            with self._done:
                self.dropped_rows += dropped
                self._written += taken
                self._done.notify_all()
            if item is None:
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is handled; False if that timed out or if any row
        was ever dropped (the log then misses some served predictions: see the server log)."""
        with self._done:
            target = self._queued
            handled = self._done.wait_for(lambda: self._written >= target, timeout)
            return handled and self.dropped_rows == 0

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10.0)
        self._log.close()


class FlightDelayService:
    """Scores flights on the fly with online features and an ONNX model; framework-free."""

    # The request contract. A service on other requests overrides these with ``decode_request``:
    # the V2 endpoint accepts exactly ``input_fields`` as its input tensors and lists them in its
    # metadata, and the OpenAPI document at /docs describes the app and the body of /predict.
    input_fields: ClassVar[tuple[FlightField, ...]] = FIELDS
    input_notes: ClassVar[Mapping[str, str]] = {
        # Not every input is needed: the scheduled departure has three equivalent forms.
        "required_inputs": "carrier, flight, origin, dest, distance",
        "departure_inputs": "scheduled_departure | sched_ts | year, month, day, hour, minute",
    }
    description: ClassVar[str] = (
        "Predicts whether a scheduled New York flight leaves 15 minutes late or more, from the raw "
        "flight fields plus online features read from the feature store. Unknown carrier and "
        "airport codes are accepted and encoded -1."
    )
    predict_body_doc: ClassVar[Mapping[str, Any]] = PREDICT_BODY_DOC

    def __init__(
        self,
        predictor: Predictor,
        store: OnlineStore,
        *,
        feature_set: FeatureSet = FLIGHT_FEATURES,
        log: PredictionLog | None = None,
        slot: str | None = None,
        model_name: str = MODEL_NAME,
    ) -> None:
        # The same refusal as Predictor.load's, for a service built by hand around its own
        # feature set: a model trained on other features would score this matrix as if it were its own.
        predictor.model.check_fingerprint(feature_set.fingerprint())
        self.predictor = predictor
        self.store = store
        self.feature_set = feature_set
        self.executor = OnlineExecutor(feature_set, store)
        self.slot = slot
        self.model_name = model_name
        self.feature_names = feature_set.names
        self._log = _LogWriter(log, self.feature_names) if log is not None else None

    @classmethod
    def from_config(
        cls,
        version: str | None = None,
        *,
        store: str = "redis",
        redis_url: str | None = None,
        redis_prefix: str = "mlp",
        registry: Registry | None = None,
        slot: str | None = None,
        log: bool = True,
        feature_set: FeatureSet = FLIGHT_FEATURES,
    ) -> Self:
        """Load ``version`` (latest when None) with its checksum and feature fingerprint verified."""
        predictor = Predictor.load(version, registry, running_fingerprint=feature_set.fingerprint())
        return cls(
            predictor,
            build_store(store, redis_url, redis_prefix),
            feature_set=feature_set,
            log=PredictionLog("rest_api") if log else None,
            slot=slot,
        )

    @property
    def version(self) -> str:
        return self.predictor.version

    # --- hooks ---------------------------------------------------------------------------------

    def decode_request(self, payload: Any, where: str = "") -> dict[str, Any]:
        """Raw JSON object -> the raw request fields; ``InputError`` names a bad field."""
        return decode_flight(payload, where)

    def features(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """(n, n_features) float64 from the online store, one store round trip for the batch."""
        with _feature_errors():
            return self.executor.matrix(requests)

    async def features_async(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``features`` for the asyncio server (awaits the store); override both or neither."""
        with _feature_errors():
            return await self.executor.matrix_async(requests)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Delay probability per row (onnxruntime)."""
        return self.predictor.predict_proba(features)

    def encode_response(self, prediction: Prediction, explain: bool = False) -> dict[str, Any]:
        """The JSON object answered for one flight."""
        body: dict[str, Any] = {
            "request_id": prediction.request_id,
            "model_version": self.version,
            "probability": prediction.probability,
        }
        if explain:
            body["features"] = {
                n: (None if math.isnan(v) else v)
                for n, v in zip(self.feature_names, prediction.features.tolist(), strict=True)
            }
        return body

    # --- driving the hooks -----------------------------------------------------------------------

    def score(
        self, requests: Sequence[Mapping[str, Any]], request_ids: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        """Features + model + prediction log for decoded requests (the part worth batching)."""
        return self._scored(requests, request_ids, self.features(requests)) if requests else []

    async def score_async(
        self, requests: Sequence[Mapping[str, Any]], request_ids: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        """``score`` on the event loop: only the feature-store read waits, and it does not block."""
        return self._scored(requests, request_ids, await self.features_async(requests)) if requests else []

    def _scored(
        self, requests: Sequence[Mapping[str, Any]], request_ids: Sequence[str | None] | None, x: np.ndarray
    ) -> list[Prediction]:
        probabilities = self.predict(x).tolist()
        ids = request_ids or [None] * len(requests)
        rows = [
            Prediction(rid or _request_id(), req, x[i], probabilities[i])
            for i, (req, rid) in enumerate(zip(requests, ids, strict=True))
        ]
        if self._log is not None:
            self._log.put(self.version, rows)
        return rows

    def handle(self, payload: Any, explain: bool = False) -> dict[str, Any]:
        """Decode, score and encode one flight object in one call (no batching across callers)."""
        request = self.decode_request(payload)
        rid = payload.get("request_id") if isinstance(payload.get("request_id"), str) else None
        return self.encode_response(self.score([request], [rid])[0], explain)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Probabilities for a ready feature matrix (golden sets, blue-green checks); not logged."""
        return self.predict(np.asarray(features, dtype=np.float32))

    def ready(self) -> bool:
        """The model is loaded and the feature store answers a ping."""
        try:
            return self.predictor is not None and bool(self.store.ping())
        except Exception:
            return False

    def info(self) -> dict[str, Any]:
        """What a deployment tool needs to identify this process's model."""
        return {
            "model_name": self.model_name,
            "model_version": self.version,
            "feature_fingerprint": self.predictor.feature_fingerprint,
            "running_fingerprint": self.feature_set.fingerprint(),
            "slot": self.slot,
            "store": type(self.store).__name__,
            "n_features": len(self.feature_names),
            "feature_names": self.feature_names,
        }

    def flush_log(self, timeout: float = 10.0) -> bool:
        """Wait for the prediction log; False on a timeout or if a write ever failed (rows dropped)."""
        return self._log.flush(timeout) if self._log is not None else True

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
