"""Export skew: scikit-learn vs ONNX from the registry, scores files and mobile parity reports."""

from __future__ import annotations

import json
import pickle

import numpy as np
import onnx
import pytest

from shared.consistency import ExportTolerance, check_exports, compare_scores, write_scores
from shared.consistency.config import load_thresholds
from shared.consistency.export import read_export_report, write_export_report
from shared.example.train import feature_table
from shared.registry import Registry, sha256_file


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
    # Rounding to 0.1 only ties some rows: the AUC drops a little, far less than 0.5.
    loose = compare_scores(reference, np.round(reference, 1), y, tolerance=ExportTolerance(1.0, 0.0, 0.5))
    assert loose.status == "pass", loose.reasons
    assert 0.0 < loose.metrics["auc_drop"] < 0.05
    # The same scores under an AUC budget smaller than that drop fail on AUC alone.
    strict = ExportTolerance(1.0, 0.0, loose.metrics["auc_drop"] / 2)
    tight = compare_scores(reference, np.round(reference, 1), y, tolerance=strict)
    assert tight.status == "fail"
    assert len(tight.reasons) == 1 and "AUC" in tight.reasons[0], tight.reasons


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


def _write_mobile_report(home, formats):  # type: ignore[no-untyped-def]
    """A mobile export.json plus one artifact file per format, recorded with its real sha256."""
    folder = home / "mobile" / "exports" / "v1"
    folder.mkdir(parents=True)
    for fmt, row in formats.items():
        artifact = folder / f"{fmt}.bin"
        artifact.write_bytes(f"model bytes of {fmt}".encode())
        row |= {"file": artifact.name, "sha256": sha256_file(artifact)}
    path = folder / "export.json"
    path.write_text(json.dumps({"version": "v1", "feature_fingerprint": "x", "formats": formats}))
    return path


def _float32_row(n: int) -> dict:
    return {"rows": n, "ran": True, "max_abs_diff": 0.0, "mean_abs_diff": 0.0, "agreement": 1.0,
            "auc_source": 0.7, "auc_export": 0.7, "failures": []}  # fmt: skip


def test_mobile_export_report_is_rejudged_and_coreml_off_macos_is_not_run(world, home, holdout) -> None:  # type: ignore[no-untyped-def]
    x, y = holdout
    source = _sklearn_scores(world.model, x)
    rounded = np.round(source, 1)
    metrics = compare_scores(source, rounded, y).metrics
    path = _write_mobile_report(
        home,
        {
            "tflite_float32": _float32_row(len(y)),
            "tflite_dynamic_int8": {"rows": len(y), "ran": True, "max_abs_diff": metrics["max_abs_diff"],
                                    "mean_abs_diff": metrics["mean_abs_diff"],
                                    "agreement": metrics["label_agreement"],
                                    "auc_source": metrics["auc_reference"],
                                    "auc_export": metrics["auc_candidate"], "failures": []},
            "coreml": {"ran": False, "failures": [],
                       "note": "numeric parity NOT run: Core ML predicts only on macOS"},
        },
    )  # fmt: skip
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


def test_mobile_artifact_changed_or_missing_since_its_report_fails(home) -> None:  # type: ignore[no-untyped-def]
    """The recorded numbers describe the bytes that were measured, not whatever is on disk now."""
    path = _write_mobile_report(
        home,
        {
            "tflite_float32": _float32_row(1000),
            "onnx": _float32_row(1000),
            "coreml": {"ran": False, "failures": [], "note": "numeric parity NOT run"},
        },
    )
    assert [c.status for c in read_export_report(path)] == ["pass", "pass", "not_run"]
    (path.parent / "tflite_float32.bin").write_bytes(b"garbage")
    (path.parent / "onnx.bin").unlink()
    (path.parent / "coreml.bin").write_bytes(b"garbage")
    changed, missing, coreml = read_export_report(path)
    assert changed.status == "fail" and "artifact changed since its parity report" in changed.reasons[0]
    assert missing.status == "fail" and "missing" in missing.reasons[0]
    assert coreml.status == "fail" and "artifact changed" in coreml.reasons[0]
    result = check_exports(reports=[path], registry=Registry(home / "empty"))
    assert not result.passed
    assert {"mobile v1 tensorflow vs tflite_float32", "mobile v1 tensorflow vs onnx"} <= set(result.flagged)


def test_nan_and_scaled_down_scores_fail_even_where_max_diff_is_not_gated(world, home, holdout) -> None:  # type: ignore[no-untyped-def]
    """tflite_int8's gate has max_abs_diff = inf: ranking and decisions must still catch broken scores."""
    x, y = holdout
    reference = _sklearn_scores(world.model, x)
    int8 = load_thresholds().export("tflite_int8")
    assert int8.max_abs_diff == float("inf")
    noisy = np.clip(reference + np.random.default_rng(0).normal(0, 0.003, len(reference)), 0, 1)
    assert compare_scores(reference, noisy, y, tolerance=int8).passed  # an honest int8-like export
    nan = compare_scores(reference, np.full(len(reference), np.nan), y, tolerance=int8)
    assert nan.status == "fail"
    assert any("non-finite" in r for r in nan.reasons) and "AUC could not be computed" in nan.reasons
    # Same ranking (AUC unchanged), every score scaled down: at 0.5 nearly all rows "agree".
    scaled = compare_scores(reference, 0.3 * reference, y, tolerance=int8)
    assert abs(scaled.metrics["auc_drop"]) < 1e-9
    assert scaled.status == "fail" and any("label agreement" in r for r in scaled.reasons)
    assert scaled.metrics["decision_threshold"] == pytest.approx(np.mean(y))
    # A report recorded by a producer that let NaNs through is failed when re-judged.
    row = {"rows": len(y), "ran": True, "max_abs_diff": float("inf"), "mean_abs_diff": float("nan"),
           "agreement": 0.98, "auc_source": 0.7, "auc_export": float("nan"), "failures": []}  # fmt: skip
    path = _write_mobile_report(home, {"tflite_int8": row})
    result = check_exports(reports=[path], registry=Registry(home / "empty"))
    assert result.flagged == ["mobile v1 tensorflow vs tflite_int8"]
    message = result.finding("mobile v1 tensorflow vs tflite_int8").message
    assert "non-finite" in message and "AUC could not be computed" in message


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


def test_consistency_gate_fails_checks_that_cannot_run_before_the_candidate_serves(world, home) -> None:  # type: ignore[no-untyped-def]
    """A candidate has no serving logs yet: features and drift cannot run, so they verify nothing."""
    from shared.consistency.gate import ConsistencyGate
    from shared.deploy import Candidate
    from shared.deploy.gates import GateContext

    model = Registry().get(world.model.version)
    card = Candidate(model.version, model.feature_fingerprint)
    ctx = GateContext(switch=None, candidate=None, live=None, model=card, phase="verify")  # type: ignore[arg-type]
    unverified = ConsistencyGate(checks=("features", "drift")).check(ctx)
    assert not unverified.passed
    assert "not verified" in unverified.detail and "features (no prediction-log records" in unverified.detail
    assert "drift (no prediction-log records" in unverified.detail
    accepted = ConsistencyGate(checks=("features", "drift"), strict=False).check(ctx)  # explicitly allowed
    assert accepted.passed and "not run: features" in accepted.detail
