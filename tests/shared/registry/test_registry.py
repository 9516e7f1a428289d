"""The registry refuses corrupted artifacts and models trained on other feature definitions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shared.example.flights import FLIGHT_FEATURES
from shared.example.train import TrainingConfig, train
from shared.predictor import Predictor
from shared.registry import FingerprintMismatch, IntegrityError, Registry


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("registry"))
    train(TrainingConfig(train_months=(1,), valid_months=(2,), max_iter=30), reg)
    return reg


def test_a_trained_version_records_metrics_checksums_and_beats_the_baseline(registry) -> None:
    v = registry.get("v1")
    assert v.feature_fingerprint == FLIGHT_FEATURES.fingerprint()
    assert v.feature_names == FLIGHT_FEATURES.names
    assert v.metrics["valid_auc"] > v.metrics["baseline_auc"] + 0.1
    assert v.metrics["valid_logloss"] < v.metrics["baseline_logloss"]
    assert v.metrics["onnx_max_abs_diff"] < 1e-5
    assert set(v.artifacts) == {"model.onnx", "model.pkl", "golden.npz"}
    v.verify()
    inputs, outputs = v.golden_set()
    predictor = Predictor(v, running_fingerprint=FLIGHT_FEATURES.fingerprint())
    np.testing.assert_allclose(predictor.predict_proba(inputs), outputs, atol=1e-6)


def test_one_flipped_byte_in_an_artifact_is_refused(registry, tmp_path) -> None:
    v = registry.get("v1")
    onnx = v.path / "model.onnx"
    original = onnx.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x01
    onnx.write_bytes(bytes(damaged))
    try:
        with pytest.raises(IntegrityError, match=r"model\.onnx is corrupted"):
            Predictor(registry.get("v1"))
        with pytest.raises(IntegrityError):
            registry.get("v1").verify()
    finally:
        onnx.write_bytes(original)
    registry.get("v1").verify()


def test_a_model_of_other_feature_definitions_is_refused(registry) -> None:
    v = registry.get("v1")
    with pytest.raises(FingerprintMismatch, match="retrain"):
        Predictor(v, running_fingerprint="flight_delay:0000000000000000")


def test_versions_are_numbered_and_listed_in_order(registry, tmp_path) -> None:
    v = registry.get("v1")
    manifest = json.loads((v.path / "manifest.json").read_text())
    assert manifest["training"]["train_months"] == [1]
    with pytest.raises(KeyError, match="no model version 'v99'"):
        registry.get("v99")
    assert [m.version for m in registry.list()] == ["v1"]
    assert registry.latest().version == "v1"
