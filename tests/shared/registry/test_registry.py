"""The registry refuses corrupted artifacts and models trained on other feature definitions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.errors import UserError
from shared.example.flights import FLIGHT_FEATURES
from shared.example.train import TrainingConfig, decision_threshold, train
from shared.predictor import Predictor
from shared.registry import FingerprintMismatch, IntegrityError, InvalidVersion, Registry, UnknownVersion
from tests.conftest import register_copy


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("registry"))
    train(TrainingConfig(train_months=(1,), valid_months=(2,), max_iter=30), reg)
    return reg


def test_a_trained_version_records_metrics_checksums_and_beats_the_baseline(registry) -> None:
    v = registry.get("v1")
    assert v.feature_fingerprint == FLIGHT_FEATURES.fingerprint()
    assert v.feature_names == FLIGHT_FEATURES.names
    # The baseline is the delay rate by scheduled hour: it ranks (hour matters), the model ranks better.
    assert 0.55 < v.metrics["baseline_auc"] < v.metrics["valid_auc"] - 0.05
    assert v.metrics["valid_logloss"] < v.metrics["baseline_logloss"]
    assert v.metrics["onnx_max_abs_diff"] < 1e-5
    assert 0.1 < v.metrics["decision_threshold"] < 0.5  # best F1 sits below 0.5 at a 20 % delay rate
    assert 0 < v.metrics["valid_recall"] < 1 and 0 < v.metrics["valid_precision"] < 1
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


def test_versions_are_numbered_and_listed_in_order(private: Registry) -> None:
    v = private.get("v1")
    manifest = json.loads((v.path / "manifest.json").read_text())
    assert manifest["training"]["train_months"] == [1]
    with pytest.raises(KeyError, match="no model version 'v99'"):
        private.get("v99")
    inputs, outputs = v.golden_set()
    for _ in range(9):  # v2 .. v10: v10 must sort after v9, not between v1 and v2
        private.register(
            {"model.onnx": v.path / "model.onnx", "model.pkl": v.path / "model.pkl"},
            feature_set=v.feature_set,
            feature_fingerprint=v.feature_fingerprint,
            feature_names=v.feature_names,
            training=v.training,
            metrics=v.metrics,
            data_fingerprint=v.data_fingerprint,
            golden_inputs=inputs,
            golden_outputs=outputs,
        )
    assert [m.version for m in private.list()] == [f"v{i}" for i in range(1, 11)]
    assert private.latest().version == "v10"


def _copy_version(root: Path, source: str, name: str, claims: str | None = None) -> None:
    """Copy ``source`` to directory ``name``; its manifest then claims ``claims`` (default: unchanged)."""
    shutil.copytree(root / source, root / name)
    if claims is not None:
        manifest = root / name / "manifest.json"
        manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"version": claims}))


@pytest.fixture
def private(registry: Registry, tmp_path: Path) -> Registry:
    """A copy of the module's registry this test may damage."""
    shutil.copytree(registry.root, tmp_path / "home" / "registry")
    return Registry(tmp_path / "home" / "registry")


@pytest.mark.parametrize("name", ["../outside/x", "/abs/path", "v1.bak", "v1-old", "1", "v", "V1", "v1/"])
def test_a_version_name_must_be_v_and_a_number(private: Registry, name: str) -> None:
    outside = private.root.parent / "outside" / "x"  # a model beside, not inside, the registry
    shutil.copytree(private.root / "v1", outside)
    with pytest.raises(InvalidVersion, match=r"model version must look like v1, v2, \.\.\., got ") as caught:
        private.get(name)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, KeyError)
    with pytest.raises(InvalidVersion):
        Predictor.load(name, private)


def test_a_copied_version_whose_manifest_names_another_is_refused(private: Registry) -> None:
    _copy_version(private.root, "v1", "v7")  # its manifest still says v1
    with pytest.raises(IntegrityError, match=r"manifest says version 'v1' but the directory is v7"):
        private.get("v7")
    with pytest.raises(IntegrityError, match="v7"):
        Predictor.load(None, private)  # the latest is v7: refused, not served as "v7"
    assert private.names() == ["v1", "v7"]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[: len(text) // 2], "not a readable manifest"),  # a truncated write
        (lambda text: "\udcff", "not a readable manifest"),  # not UTF-8
        (lambda text: "[1, 2]", "a manifest is a JSON object, got list"),
        (
            lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "artifacts"}),
            "lacks artifacts",
        ),
    ],
    ids=["truncated", "not-utf8", "not-an-object", "missing-key"],
)
def test_a_damaged_manifest_is_an_integrity_error_and_the_others_still_load(
    private: Registry, damage, message: str
) -> None:
    _copy_version(private.root, "v1", "v2", claims="v2")
    manifest = private.root / "v2" / "manifest.json"
    manifest.write_bytes(damage(manifest.read_text()).encode("utf-8", "surrogateescape"))
    with pytest.raises(IntegrityError, match=message):
        private.get("v2")
    assert private.names() == ["v1", "v2"]  # still listed (as damaged), and v1 still loads
    assert private.get("v1").version == "v1"


def test_only_version_named_directories_are_listed(private: Registry) -> None:
    _copy_version(private.root, "v1", "v1.bak")
    _copy_version(private.root, "v1", "v1-old", claims="v1-old")
    _copy_version(private.root, "v1", "v10", claims="v10")
    _copy_version(private.root, "v1", "v2", claims="v2")
    assert [v.version for v in private.list()] == ["v1", "v2", "v10"]
    assert private.latest().version == "v10"
    assert private.latest().path == private.root / "v10"


def test_a_missing_version_is_a_user_error_that_is_still_a_key_error(private: Registry, tmp_path) -> None:
    with pytest.raises(UnknownVersion) as caught:
        private.get("v99")
    assert isinstance(caught.value, UserError) and isinstance(caught.value, KeyError)
    assert str(caught.value) == f"no model version 'v99' in {private.root} (known: v1)"
    empty = Registry(tmp_path / "empty")
    with pytest.raises(UnknownVersion) as caught:
        empty.latest()
    assert isinstance(caught.value, UserError) and isinstance(caught.value, KeyError)
    assert str(caught.value) == f"the registry at {empty.root} is empty: run `mlpatterns train` first"


def test_the_decision_threshold_is_the_best_f1_cut() -> None:
    y = np.array([0, 0, 1, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.35, 0.6, 0.9])
    cut, precision, recall = decision_threshold(y, p)
    # Cutting at 0.3 flags 4 flights, 3 of them delayed: F1 6/7, better than any other cut.
    assert (cut, precision, recall) == (0.3, 0.75, 1.0)


def test_a_model_without_the_probabilities_output_is_refused_at_load(registry, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An ONNX classifier exported with another output name (or zipmap's list of dicts) would
    register fine and fail at the first request; the predictor says so when it is built."""
    import onnx
    from onnx import TensorProto, helper

    n = len(FLIGHT_FEATURES.names)
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["prob"])],
        "other_output",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [None, n])],
    )
    blob = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(blob))
    other = register_copy(Registry(tmp_path / "r"), registry.latest(), {"model.onnx": blob})
    with pytest.raises(
        ValueError, match=r"must have an output 'probabilities' of \(n, 2\) floats.*it has prob"
    ):
        Predictor(other)
