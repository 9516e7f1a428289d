"""The on-device model: TensorFlow, preprocessing inside the graph, trained on the raw app inputs.

One ``tf.function`` (``MobileModel.predict``: int32 ``raw [N, 13]`` -> ``delay_probability [N, 1]``)
is used for training and for every export, so scaling and category encoding cannot drift between
them. The trained parameters live in ``weights.npz`` (registered with sha256 in the mobile registry);
the graph is rebuilt from them, which is also how the ONNX export is written node by node.

TensorFlow is imported lazily: the reference client and the manifest tools never pay for it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from patterns.mobile.inputs import CODE_WIDTHS, INPUT_NAME, MOBILE_FEATURES, N_RAW, RAW_COLUMNS, encode
from patterns.mobile.inputs import vocabulary_codes as _vocab
from shared import settings
from shared.example.data import check_time_split
from shared.registry import ModelVersion, Registry

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MobileTrainingConfig",
    "Params",
    "build_module",
    "encoding_problems",
    "folded_w1",
    "heldout",
    "load_params",
    "mobile_registry",
    "month_table",
    "predict_tf",
    "train_mobile",
]

GOLDEN_ROWS = 256
_TRAINED = ("w1_main", "w_month", "b1", "w2", "b2")
Params = dict[str, np.ndarray]
#: Column offsets of each code field inside ``raw`` (after the 5 numeric columns).
CODE_OFFSETS = {"carrier": 5, "origin": 7, "dest": 10}
#: Distance enters as a thermometer code over this many training-quantile edges.
DIST_BUCKETS = 15


@dataclass(frozen=True)
class MobileTrainingConfig:
    train_months: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    heldout_months: tuple[int, ...] = (10, 11, 12)
    hidden: int = 32
    epochs: int = 3
    batch_size: int = 512
    learning_rate: float = 0.005
    seed: int = 0

    def __post_init__(self) -> None:
        check_time_split(self.train_months, self.heldout_months, "held-out")


def mobile_registry(root: Path | str | None = None) -> Registry:
    """Mobile model versions (``$MLPATTERNS_HOME/mobile/registry`` unless ``root`` is given)."""
    return Registry(root if root is not None else settings.home() / "mobile" / "registry")


def month_table() -> np.ndarray:
    """(sin, cos) of the month on the yearly circle; a one-hot month times this table = seasonality
    without Sin/Cos ops (which full-integer TFLite and some converters handle badly)."""
    angle = 2 * np.pi * np.arange(12) / 12
    return np.stack([np.sin(angle), np.cos(angle)], axis=1).astype(np.float32)


def _input_width() -> int:
    return 24 + 1 + 7 + DIST_BUCKETS + sum(len(_vocab(f)) for f in CODE_WIDTHS)  # + 12 months


def build_module(params: Params) -> Any:
    """A ``tf.Module`` whose ``predict`` is the whole model; variables are initialised from ``params``."""
    import tensorflow as tf

    class MobileModel(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="flight_delay_mobile")
            self.w1_main = tf.Variable(params["w1_main"], name="w1_main")
            self.w_month = tf.Variable(params["w_month"], name="w_month")
            self.b1 = tf.Variable(params["b1"], name="b1")
            self.w2 = tf.Variable(params["w2"], name="w2")
            self.b2 = tf.Variable(params["b2"], name="b2")
            self.dist_edges = params["dist_edges"].astype(np.int32).reshape(1, -1)

        def encode(self, raw: Any) -> Any:
            raw = tf.cast(raw, tf.int32)

            def onehot(col: Any, values: np.ndarray) -> Any:
                return tf.cast(tf.equal(col, tf.constant(values.reshape(1, -1), tf.int32)), tf.float32)

            def packed(field: str) -> Any:
                start, width = CODE_OFFSETS[field], CODE_WIDTHS[field]
                total = raw[:, start : start + 1]
                for i in range(1, width):
                    total = total * 256 + raw[:, start + i : start + i + 1]
                return total

            # Thermometer code on training quantiles: 0/1 features only, exact under int8 quantization
            # (a scaled float distance shares one int8 scale with the one-hots and loses most bits).
            dist = tf.cast(tf.greater_equal(raw[:, 4:5], tf.constant(self.dist_edges)), tf.float32)
            # "+ 1" keeps the TFLite converter from rewriting Equal(x, 0..n-1) into ONE_HOT, whose
            # full-integer kernel quantizes the off value to 0.5 instead of 0.
            parts = [
                onehot(raw[:, 0:1] + 1, np.arange(1, 25)),
                tf.cast(raw[:, 1:2], tf.float32) / 60.0,
                onehot(raw[:, 2:3] + 1, np.arange(1, 8)),
                dist,
            ]
            parts += [onehot(packed(f), _vocab(f).astype(np.int32)) for f in CODE_WIDTHS]
            parts.append(onehot(raw[:, 3:4], np.arange(1, 13)))
            return tf.concat(parts, axis=1)

        def w1(self) -> Any:
            # Month rows = (sin, cos) table x 2 learned rows: seasonality that extrapolates to
            # held-out months, while the graph input stays 0/1 (nothing for int8 to clip).
            return tf.concat([self.w1_main, tf.constant(month_table()) @ self.w_month], axis=0)

        def logits(self, raw: Any) -> Any:
            hidden = tf.nn.relu(self.encode(raw) @ self.w1() + self.b1)
            return hidden @ self.w2 + self.b2

        @tf.function(input_signature=[tf.TensorSpec([None, N_RAW], tf.int32, name=INPUT_NAME)])
        def predict(self, raw: Any) -> Any:
            return tf.sigmoid(self.logits(raw))

    return MobileModel()


def _initial_params(config: MobileTrainingConfig, dist: np.ndarray) -> Params:
    rng = np.random.default_rng(config.seed)
    d, h = _input_width(), config.hidden
    edges = np.quantile(dist.astype(np.float64), np.linspace(0, 1, DIST_BUCKETS + 2)[1:-1])
    # Strictly increasing integer edges (tied quantiles are nudged up by one mile).
    edges = np.rint(edges).astype(np.int64)
    for i in range(1, DIST_BUCKETS):
        edges[i] = max(edges[i], edges[i - 1] + 1)
    return {
        "w1_main": (rng.normal(0, 1, (d, h)) * np.sqrt(2.0 / d)).astype(np.float32),
        "w_month": (rng.normal(0, 1, (2, h)) * np.sqrt(2.0 / d)).astype(np.float32),
        "b1": np.zeros(h, np.float32),
        "w2": (rng.normal(0, 1, (h, 1)) * np.sqrt(1.0 / h)).astype(np.float32),
        "b2": np.zeros(1, np.float32),
        "dist_edges": edges.astype(np.int32),
    }


def folded_w1(params: Params) -> np.ndarray:
    """First-layer weights with the month rows folded in (what every export's graph multiplies by)."""
    return np.concatenate([params["w1_main"], month_table() @ params["w_month"]]).astype(np.float32)


def heldout(months: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(raw int32 inputs, labels) of ``months``: the evaluation set of the parity reports."""
    from shared.example.data import load_flights

    flights = load_flights(months=months)
    return encode(flights), flights["label"].to_numpy(np.int64)


def encoding_problems(mv: ModelVersion) -> list[str]:
    """Columns where this code's ``encode`` (what the app does) differs from the one ``mv`` was
    trained with; empty when they agree.

    The golden rows are held-out flights as encoded at training. Encoded again now they must be
    the same integers: an app-side change (miles sent as km, a column moved) reaches the source
    model and every export alike, so no parity between them can see it.
    """
    raw, _ = heldout(tuple(mv.training["heldout_months"]))
    stored, _ = mv.golden_set()
    if len(raw) < len(stored) or raw.shape[1] != stored.shape[1]:
        return [f"the held-out months encode to {raw.shape}, the golden set holds {stored.shape}"]
    rows = np.random.default_rng(mv.training["seed"]).choice(len(raw), len(stored), replace=False)
    differ = (raw[rows].astype(np.float32) != stored).sum(axis=0)
    return [
        f"{RAW_COLUMNS[j]} differs in {n} of {len(stored)} golden rows" for j, n in enumerate(differ) if n
    ]


def _fit(params: Params, raw: np.ndarray, y: np.ndarray, config: MobileTrainingConfig) -> Params:
    import tensorflow as tf

    tf.random.set_seed(config.seed)
    module = build_module(params)
    variables = [module.w1_main, module.w_month, module.b1, module.w2, module.b2]
    opt = tf.keras.optimizers.Adam(config.learning_rate)
    loss_fn = tf.keras.losses.BinaryCrossentropy(from_logits=True)

    @tf.function
    def step(xb: Any, yb: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, module.logits(xb))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    rng = np.random.default_rng(config.seed)
    yf = y.astype(np.float32).reshape(-1, 1)
    for _ in range(config.epochs):
        order = rng.permutation(len(raw))
        for start in range(0, len(raw), config.batch_size):
            idx = order[start : start + config.batch_size]
            step(tf.constant(raw[idx]), tf.constant(yf[idx]))
    return {**params, **{k: getattr(module, k).numpy() for k in _TRAINED}}


def predict_tf(params: Params, raw: np.ndarray) -> np.ndarray:
    """Probabilities of the TensorFlow source graph (the reference every export is compared with)."""
    return np.asarray(_module_of(params).predict(np.asarray(raw, np.int32)).numpy(), np.float64).ravel()


_MODULES: list[tuple[Params, Any]] = []


def _module_of(params: Params) -> Any:
    # One module (one traced graph) per parameter set: building a module per call retraces
    # predict every time, which is slow and makes TensorFlow warn about excessive retracing.
    # Parameter sets are never modified in place (training returns new ones), so identity is safe.
    for known, module in _MODULES:
        if known is params:
            return module
    _MODULES[:] = [*_MODULES[-3:], (params, build_module(params))]
    return _MODULES[-1][1]


def load_params(version: ModelVersion) -> Params:
    """The trained parameters of a mobile version (sha256 checked by the registry)."""
    with np.load(version.artifact("weights.npz")) as data:
        return {k: data[k] for k in data.files}


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p))


def train_mobile(
    config: MobileTrainingConfig = MobileTrainingConfig(),
    registry: Registry | None = None,
    progress: Callable[[str], None] = lambda _: None,
    flights: pd.DataFrame | None = None,
) -> ModelVersion:
    """Train on ``train_months``, evaluate on ``heldout_months``, register ``weights.npz`` + golden set."""
    from shared.example.data import frame_fingerprint, load_flights

    registry = registry or mobile_registry()
    progress(f"loading months {config.train_months}")
    data = flights if flights is not None else load_flights(months=config.train_months)
    data = data[data["month"].isin(config.train_months)]
    raw, y = encode(data), data["label"].to_numpy(np.int64)
    progress(f"training on {len(raw):,} flights")
    params = _fit(_initial_params(config, raw[:, 4]), raw, y, config)
    raw_h, y_h = heldout(config.heldout_months)
    p_h = predict_tf(params, raw_h)
    metrics = {
        "train_auc": _auc(y, predict_tf(params, raw)),
        "heldout_auc": _auc(y_h, p_h),
        "heldout_rows": float(len(raw_h)),
    }
    progress(f"held-out AUC {metrics['heldout_auc']:.4f}")
    golden = raw_h[np.random.default_rng(config.seed).choice(len(raw_h), GOLDEN_ROWS, replace=False)]
    buf = io.BytesIO()
    np.savez(buf, **params)  # type: ignore[arg-type]
    return registry.register(
        {"weights.npz": buf.getvalue()},
        feature_set=MOBILE_FEATURES.name,
        feature_fingerprint=MOBILE_FEATURES.fingerprint(),
        feature_names=list(RAW_COLUMNS),
        training={k: getattr(config, k) for k in config.__dataclass_fields__} | {"rows": len(raw)},
        metrics=metrics,
        data_fingerprint=frame_fingerprint(data),
        golden_inputs=golden.astype(np.float32),
        golden_outputs=predict_tf(params, golden),
        extra={"input": INPUT_NAME, "input_columns": list(RAW_COLUMNS), "framework": "tensorflow"},
    )
