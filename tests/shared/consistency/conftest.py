"""A small served world for the consistency tests.

One model trained on January (max_iter 50) in a tmp registry; "serving" of January 25-31 (6,066
real flights) computed by the real StreamingExecutor (which reads through the OnlineExecutor)
replaying the real departures and weather in event-time order. Each test writes its own serving
logs with the real PredictionLog into its own MLPATTERNS_HOME, perturbing what a buggy serving
path would have perturbed, with predictions made from the features that path served.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shared.consistency import replay_serving
from shared.consistency.drift import training_features
from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.predlog import PredictionLog
from shared.registry import ModelVersion, Registry

SERVED_DAYS = tuple(range(25, 32))


@dataclass
class World:
    registry_root: Path
    model: ModelVersion
    sources: dict[str, pd.DataFrame]
    requests: pd.DataFrame  # the served flights (January 25-31)
    served: np.ndarray  # what the streaming path computed for them
    training: pd.DataFrame  # offline features of the model's training window

    def rows(self, mask: pd.Series) -> np.ndarray:
        return np.flatnonzero(mask.to_numpy())

    def replay(self, rows: np.ndarray, **kwargs: object) -> np.ndarray:
        """Serving features of ``rows`` replayed again (with the perturbation in ``kwargs``)."""
        return replay_serving(self.requests.iloc[rows], self.sources, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, copy_registry: Callable[[Path], Registry]) -> World:
    registry = copy_registry(tmp_path_factory.mktemp("consistency"))
    root, model = registry.root, registry.get("v1")
    every = load_flights()
    sources = event_sources(every)
    requests = every[(every["month"] == 1) & every["day"].isin(SERVED_DAYS)].reset_index(drop=True)
    served = replay_serving(requests, sources)
    return World(root, model, sources, requests, served, training_features(model))


@pytest.fixture
def home(tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh MLPATTERNS_HOME holding a copy of the world's registry."""
    shutil.copytree(world.registry_root, tmp_path / "registry")
    monkeypatch.setenv("MLPATTERNS_HOME", str(tmp_path))
    yield tmp_path


Serve = Callable[..., None]


@pytest.fixture
def serve(home: Path, world: World) -> Serve:
    """Log served examples as a serving path does: features it used, prediction made from them."""

    def _serve(
        rows: np.ndarray,
        features: np.ndarray | None = None,
        pattern: str = "streaming",
        prediction: Callable[[np.ndarray], np.ndarray] | None = None,
        version: str | None = None,
        drop_fields: tuple[str, ...] = (),
    ) -> None:
        """Log ``rows`` of the world's requests with ``features`` (default: the clean replay),
        under model ``version`` (default the world's) and without the request's ``drop_fields``."""
        idx = np.asarray(rows)
        x = world.served[idx] if features is None else features
        assert x.shape == (len(idx), len(FLIGHT_FEATURES.names))
        p = Predictor(Registry(home / "registry").get(world.model.version)).predict_proba(x)
        if prediction is not None:
            p = prediction(p)
        fields = [f for f in FLIGHT_FEATURES.request_fields if f not in drop_fields]
        records = world.requests.iloc[idx].to_dict("records")
        log = PredictionLog(pattern)
        log.write_many(
            [
                (
                    r["flight_id"],
                    {k: r[k] for k in fields},
                    dict(zip(FLIGHT_FEATURES.names, x[i], strict=True)),
                    p[i],
                )
                for i, r in enumerate(records)
            ],
            model_version=version or world.model.version,
        )
        log.close()

    return _serve
