"""Train the example model: HistGradientBoosting on a time-based split, exported to ONNX, registered.

Earlier months train, later months validate, so validation never sees the future of training. The
departure events of the whole year feed the window features: that is safe because every window
ends an hour before the flight's scheduled time, before any flight leaves (``LEAD_SECONDS``).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.example.data import check_time_split, event_sources, frame_fingerprint, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import OfflineExecutor
from shared.registry import ModelVersion, Registry

__all__ = ["TrainingConfig", "decision_threshold", "feature_table", "train"]

GOLDEN_ROWS = 256


@dataclass(frozen=True)
class TrainingConfig:
    train_months: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    valid_months: tuple[int, ...] = (10, 11, 12)
    max_iter: int = 200
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    seed: int = 0

    def __post_init__(self) -> None:
        check_time_split(self.train_months, self.valid_months, "validation")


def feature_table(months: tuple[int, ...]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(flights of ``months``, their offline features) for training or evaluation."""
    every_flight = load_flights()
    flights = every_flight[every_flight["month"].isin(months)].reset_index(drop=True)
    sources = event_sources(every_flight)
    return flights, OfflineExecutor(FLIGHT_FEATURES).compute(flights, sources)


def _to_onnx(model: object, n_features: int) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, n_features]))],
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return bytes(onx.SerializeToString())


def _onnx_proba(onnx_bytes: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["probabilities"], {"features": x.astype(np.float32)})[0][:, 1])


def decision_threshold(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """(threshold, precision, recall) of the score cut with the best F1 on (``y``, ``p``).

    What a consumer of a yes/no "delayed" should get: 0.5 would flag about 8 % of flights against a
    21 % delay rate (recall 0.26 on the default split), a cut nobody chose.
    """
    from sklearn.metrics import precision_recall_curve

    precision, recall, cuts = precision_recall_curve(y, p)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    best = int(np.argmax(f1))
    return float(cuts[best]), float(precision[best]), float(recall[best])


def train(
    config: TrainingConfig = TrainingConfig(),
    registry: Registry | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> ModelVersion:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import log_loss, roc_auc_score

    progress("computing offline features")
    train_flights, x_train = feature_table(config.train_months)
    valid_flights, x_valid = feature_table(config.valid_months)
    y_train, y_valid = train_flights["label"].to_numpy(), valid_flights["label"].to_numpy()
    # The model sees float32, exactly like onnxruntime does at serving time.
    xt = x_train.to_numpy(np.float32).astype(np.float64)
    xv = x_valid.to_numpy(np.float32)

    progress(f"fitting HistGradientBoosting on {len(xt):,} flights")
    model = HistGradientBoostingClassifier(
        max_iter=config.max_iter,
        learning_rate=config.learning_rate,
        max_leaf_nodes=config.max_leaf_nodes,
        # "auto" would hold out a random 10 % of the rows (over 10,000) for early stopping: unrecorded,
        # and random rows of a time series. Validation is the later months, kept apart above.
        early_stopping=False,
        random_state=config.seed,
    )
    model.fit(xt, y_train)

    progress("exporting to ONNX and checking it")
    onnx_bytes = _to_onnx(model, xt.shape[1])
    p_sklearn = model.predict_proba(xv.astype(np.float64))[:, 1]
    p_onnx = _onnx_proba(onnx_bytes, xv)
    prior = float(y_train.mean())
    # The baseline a model must beat to be worth serving: the training months' delay rate by
    # scheduled hour, a lookup table anyone could build (a constant would only give 0.5).
    by_hour = train_flights.groupby("hour")["label"].mean()
    hour_rate = valid_flights["hour"].map(by_hour).fillna(prior).to_numpy(np.float64)
    cut, precision, recall = decision_threshold(y_valid, p_onnx)
    metrics = {
        "valid_auc": float(roc_auc_score(y_valid, p_onnx)),
        "decision_threshold": cut,
        "valid_precision": precision,
        "valid_recall": recall,
        "valid_logloss": float(log_loss(y_valid, np.clip(p_onnx, 1e-7, 1 - 1e-7))),
        "baseline_auc": float(roc_auc_score(y_valid, hour_rate)),
        "baseline_logloss": float(log_loss(y_valid, np.full(len(y_valid), prior))),
        "sklearn_auc": float(roc_auc_score(y_valid, p_sklearn)),
        "onnx_max_abs_diff": float(np.max(np.abs(p_sklearn - p_onnx))),
        "train_rows": float(len(xt)),
        "valid_rows": float(len(xv)),
        "train_positive_rate": prior,
    }
    rng = np.random.default_rng(config.seed)
    golden = rng.choice(len(xv), size=min(GOLDEN_ROWS, len(xv)), replace=False)
    buffer = io.BytesIO()
    pickle.dump(model, buffer)
    training = {
        "train_months": list(config.train_months),
        "valid_months": list(config.valid_months),
        "train_from_ts": int(train_flights["sched_ts"].min()),
        "train_to_ts": int(train_flights["sched_ts"].max()),
        "estimator": "HistGradientBoostingClassifier",
        "params": vars(config) | {"train_months": None, "valid_months": None},
    }
    progress("registering")
    return (registry or Registry()).register(
        {"model.onnx": onnx_bytes, "model.pkl": buffer.getvalue()},
        feature_set=FLIGHT_FEATURES.name,
        feature_fingerprint=FLIGHT_FEATURES.fingerprint(),
        feature_names=FLIGHT_FEATURES.names,
        training=training,
        metrics=metrics,
        data_fingerprint=frame_fingerprint(pd.concat([x_train, train_flights[["label"]]], axis=1)),
        golden_inputs=xv[golden],
        golden_outputs=p_onnx[golden],
    )
