"""Export skew: scikit-learn vs ONNX from the registry, scores files and mobile parity reports."""

from __future__ import annotations

import json
import pickle

import numpy as np
import onnx
import pytest

from shared.consistency import ExportTolerance, check_exports, compare_scores, write_scores
from shared.consistency.export import read_export_report, write_export_report
from shared.example.train import feature_table
from shared.registry import Registry


@pytest.fixture(scope="module")
def holdout(world):  # type: ignore[no-untyped-def]
    flights, table = feature_table((2,))
    return table.to_numpy(np.float32), flights["label"].to_numpy()


def _sklearn_scores(model, x):  # type: ignore[no-untyped-def]
    with open(model.artifact("model.pkl"), "rb") as f:
        return pickle.load(f).predict_proba(x.astype(np.float64))[:, 1]


def test_registered_onnx_matches_sklearn_on_held_out_month(world, home, holdout) -> None:  # type: ignore[no-untyped-def]
    result = check_exports(Registry().get(world.model.version), holdout=holdout)
    assert result.passed and result.flagged == []
    row = result.finding("sklearn vs onnx")
    assert row.status == "pass"
    assert row.metrics["max_abs_diff"] < 1e-4
    assert row.metrics["label_agreement"] >= 0.999
    assert abs(row.metrics["auc_drop"]) < 1e-3
    assert 0.6 < row.metrics["auc_reference"] < 1.0


def test_damaged_onnx_is_flagged(world, home, holdout) -> None:  # type: ignore[no-untyped-def]
    # Re-register the model with an ONNX whose leaf values were scaled (a broken converter).
    registry = Registry()
    good = registry.get(world.model.version)
    graph = onnx.load(good.artifact("model.onnx"))
    for node in graph.graph.node:
        for attribute in node.attribute:
            if attribute.name in ("class_weights", "target_weights"):
                attribute.floats[:] = [w * 1.3 for w in attribute.floats]
    damaged = registry.register(
        {"model.onnx": graph.SerializeToString(), "model.pkl": good.artifact("model.pkl").read_bytes()},
        feature_set=good.feature_set,
        feature_fingerprint=good.feature_fingerprint,
        feature_names=good.feature_names,
        training=good.training,
        metrics=good.metrics,
        data_fingerprint=good.data_fingerprint,
        golden_inputs=holdout[0][:8],
        golden_outputs=np.zeros(8),
    )
    result = check_exports(damaged, holdout=holdout)
    assert result.flagged == ["sklearn vs onnx"]
    assert "max |diff|" in result.finding("sklearn vs onnx").message


def test_corrupted_artifact_fails_instead_of_loading(world, home, holdout) -> None:  # type: ignore[no-untyped-def]
    model = Registry().get(world.model.version)
    path = model.path / "model.onnx"
    path.write_bytes(path.read_bytes()[:-10])
    result = check_exports(model, holdout=holdout)
    assert result.flagged == ["sklearn vs onnx"]
    assert "corrupted" in result.finding("sklearn vs onnx").message


def test_coarsely_quantized_scores_fail_and_fine_ones_pass(world, home, holdout) -> None:  # type: ignore[no-untyped-def]
    x, y = holdout
    reference = _sklearn_scores(world.model, x)
    fine = compare_scores(reference, reference.astype(np.float32), y)
    assert fine.passed and fine.metrics["max_abs_diff"] < 1e-6
    coarse = compare_scores(reference, np.round(reference, 1), y)
    assert coarse.status == "fail"
    assert any("max |diff|" in r for r in coarse.reasons)
    assert coarse.metrics["max_abs_diff"] > 0.01
    # A tolerance that only gates ranking accepts the same scores when AUC holds up.
    loose = compare_scores(reference, np.round(reference, 1), y, tolerance=ExportTolerance(1.0, 0.0, 0.5))
    assert (loose.status == "pass") == (loose.metrics["auc_drop"] <= 0.5)


def test_scores_file_flags_only_the_quantized_artifact(world, home, holdout) -> None:  # type: ignore[no-untyped-def]
    x, y = holdout
    reference = _sklearn_scores(world.model, x)
    path = write_scores(
        home / "scores.npz",
        y,
        {
            "sklearn": reference,
            "onnx_fp32": reference.astype(np.float32),
            "onnx_coarse": np.round(reference, 1),
        },
        reference="sklearn",
    )
    result = check_exports(Registry().get(world.model.version), holdout=holdout, scores_files=[path])
    assert result.flagged == ["sklearn vs onnx_coarse"]
    assert result.finding("sklearn vs onnx_fp32").status == "pass"


def test_mobile_export_report_is_rejudged_and_coreml_off_macos_is_not_run(world, home, holdout) -> None:  # type: ignore[no-untyped-def]
    x, y = holdout
    source = _sklearn_scores(world.model, x)
    rounded = np.round(source, 1)
    metrics = compare_scores(source, rounded, y).metrics
    report = {
        "version": "v1",
        "feature_fingerprint": "x",
        "heldout_months": [2],
        "formats": {
            "tflite_float32": {"rows": len(y), "ran": True, "max_abs_diff": 0.0, "mean_abs_diff": 0.0,
                               "agreement": 1.0, "auc_source": 0.7, "auc_export": 0.7, "failures": []},
            "tflite_dynamic_int8": {"rows": len(y), "ran": True, "max_abs_diff": metrics["max_abs_diff"],
                                    "mean_abs_diff": metrics["mean_abs_diff"],
                                    "agreement": metrics["label_agreement"],
                                    "auc_source": metrics["auc_reference"],
                                    "auc_export": metrics["auc_candidate"], "failures": []},
            "coreml": {"ran": False, "failures": [],
                       "note": "numeric parity NOT run: Core ML predicts only on macOS"},
        },
    }  # fmt: skip
    path = home / "mobile" / "exports" / "v1" / "export.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(report))
    result = check_exports(Registry().get(world.model.version), holdout=holdout, reports=[path])
    statuses = {f.name: f.status for f in result.findings}
    assert statuses == {
        "sklearn vs onnx": "pass",
        "mobile v1 tensorflow vs tflite_float32": "pass",
        # the producer recorded no failure; this repository's tolerance (0.02) catches the rounding
        "mobile v1 tensorflow vs tflite_dynamic_int8": "fail",
        "mobile v1 tensorflow vs coreml": "not_run",
    }
    assert "macOS" in result.finding("mobile v1 tensorflow vs coreml").message
    # round trip of this package's own report format
    own = write_export_report(home / "own.json", [compare_scores(source, rounded, y, candidate_name="x")])
    assert [c.status for c in read_export_report(own)] == ["fail"]


def test_consistency_gate_passes_a_faithful_export_and_blocks_a_corrupted_one(world, home) -> None:  # type: ignore[no-untyped-def]
    from shared.consistency.gate import ConsistencyGate
    from shared.deploy import Candidate
    from shared.deploy.gates import GateContext

    model = Registry().get(world.model.version)
    card = Candidate(model.version, model.feature_fingerprint)
    ctx = GateContext(switch=None, candidate=None, live=None, model=card, phase="verify")  # type: ignore[arg-type]
    good = ConsistencyGate().check(ctx)
    assert good.passed and good.gate == "consistency" and good.phase == "verify"
    (model.path / "model.onnx").write_bytes(b"not an onnx model")
    bad = ConsistencyGate().check(ctx)
    assert not bad.passed
    assert "sklearn vs onnx" in bad.detail
