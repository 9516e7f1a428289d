"""Parity gates on real held-out data: they pass for honest exports and fail for damaged ones."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from patterns.mobile.export import FILES, build_artifact, check_artifact, export_dir, validate_coreml_spec
from patterns.mobile.model import heldout, load_params, predict_tf
from patterns.mobile.parity import FORMATS, ParityError, ParityReport, compare, render_table
from shared.registry import ModelVersion
from tests.conftest import register_copy

HELDOUT = (10,)  # same held-out month as conftest.py


def test_every_format_passes_its_gate(exported: dict[str, ParityReport]) -> None:
    assert list(exported) == list(FORMATS)
    for fmt, report in exported.items():
        assert not report.failures, f"{fmt}: {report.failures}"
        assert report.passed == report.ran  # numbers never measured are no pass (Core ML off macOS)
        assert report.bytes > 1000
    for fmt in ("tflite_float32", "onnx"):
        assert exported[fmt].ran and exported[fmt].max_abs_diff <= 1e-4
        assert exported[fmt].rows > 20_000
    assert exported["tflite_int8"].auc_source - exported["tflite_int8"].auc_export <= 0.01
    # Quantized files are smaller than the float32 one.
    assert exported["tflite_dynamic_int8"].bytes < exported["tflite_float32"].bytes
    assert exported["tflite_int8"].bytes < exported["tflite_float32"].bytes
    if sys.platform == "darwin":
        assert exported["coreml"].ran and exported["coreml"].max_abs_diff <= 1e-4
    else:
        assert not exported["coreml"].ran and "NOT run" in exported["coreml"].note
    table = render_table(list(exported.values()))
    assert all(fmt in table for fmt in FORMATS)


def test_coreml_spec_checks_names_types_and_metadata(
    exported: dict, mobile_home: Path, mobile_version: ModelVersion
) -> None:
    path = export_dir(mobile_version.version, mobile_home) / FILES["coreml"]
    assert validate_coreml_spec(path, mobile_version.version) == []
    problems = validate_coreml_spec(path, "v999")
    assert len(problems) == 1 and "metadata version" in problems[0]


def _damaged(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Feature rows in the wrong order: the classic "columns shuffled between training and export" bug.
    order = np.random.default_rng(3).permutation(len(params["w1_main"]))
    return dict(params, w1_main=params["w1_main"][order])


@pytest.mark.parametrize("fmt", ["tflite_float32", "tflite_int8", "onnx"])
def test_damaged_model_fails_the_gate(fmt: str, mobile_version: ModelVersion, tmp_path: Path) -> None:
    params = load_params(mobile_version)
    raw, y = heldout(HELDOUT)
    source = predict_tf(params, raw)
    rep = raw[np.random.default_rng(0).choice(len(raw), 300, replace=False)]
    path = tmp_path / FILES[fmt]
    path.write_bytes(build_artifact(fmt, _damaged(params), mobile_version.version, rep))
    report = check_artifact(fmt, path, mobile_version.version, source, raw, y)
    assert not report.passed
    assert any("max |diff|" in f or "agreement" in f or "AUC" in f for f in report.failures)


def test_mismatched_model_fails_the_gate(
    mobile_version: ModelVersion, exported: dict, mobile_home: Path
) -> None:
    """The right file checked against another model's scores (a mix-up of versions) is refused."""
    params = load_params(mobile_version)
    raw, y = heldout(HELDOUT)
    other = dict(params, b2=params["b2"] + 1.0)
    path = export_dir(mobile_version.version, mobile_home) / FILES["tflite_float32"]
    report = check_artifact("tflite_float32", path, mobile_version.version, predict_tf(other, raw), raw, y)
    assert not report.passed and report.max_abs_diff > 1e-2


def test_truncated_file_is_reported_not_crashed(mobile_version: ModelVersion, tmp_path: Path) -> None:
    raw, y = heldout(HELDOUT)
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    report = check_artifact("onnx", bad, mobile_version.version, np.zeros(len(raw)), raw, y)
    assert not report.passed and "could not run" in report.failures[0]


def test_truncated_coreml_package_is_reported_not_crashed(
    exported: dict, mobile_home: Path, mobile_version: ModelVersion, tmp_path: Path
) -> None:
    raw, y = heldout(HELDOUT)
    good = (export_dir(mobile_version.version, mobile_home) / FILES["coreml"]).read_bytes()
    bad = tmp_path / FILES["coreml"]
    bad.write_bytes(good[: len(good) // 2])  # an interrupted download: no zip directory at the end
    report = check_artifact("coreml", bad, mobile_version.version, np.zeros(len(raw)), raw, y)
    assert not report.passed and report.failures[0].startswith("could not read: BadZipFile")


def test_export_refuses_a_model_trained_on_other_inputs(mobile_version: ModelVersion, tmp_path: Path) -> None:
    """A registered model whose fingerprint is not this code's MOBILE_FEATURES is never exported."""
    from patterns.mobile.export import export_version
    from patterns.mobile.model import mobile_registry
    from shared.registry import FingerprintMismatch

    reg = mobile_registry(tmp_path / "registry")
    foreign = register_copy(reg, mobile_version, feature_fingerprint="0" * 16)
    home = tmp_path / "home"
    with pytest.raises(FingerprintMismatch, match="0000000000000000"):
        export_version(foreign.version, ["onnx"], registry=reg, home=home, heldout_months=HELDOUT)
    assert not export_dir(foreign.version, home).exists()


def test_compare_flags_each_tolerance() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    src = np.clip(0.3 * y + rng.uniform(0, 0.7, 2000), 0, 1)
    ok = compare(src, src + 1e-6, y, ParityReport("onnx", "m", 1, "x"))
    assert ok.passed and ok.agreement == 1.0
    flipped = compare(src, 1 - src, y, ParityReport("onnx", "m", 1, "x"))
    assert not flipped.passed and len(flipped.failures) == 3


def test_export_version_raises_with_clear_message(
    mobile_version: ModelVersion, mobile_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tolerance tighter than the export can meet (shared threshold file) fails the export loudly."""
    from patterns.mobile.export import export_version, load_reports
    from patterns.mobile.model import mobile_registry

    strict = tmp_path / "strict.toml"
    strict.write_text("[exports.candidates.onnx]\nmax_abs_diff = 0.0\n")
    monkeypatch.setenv("MLPATTERNS_CHECK_CONFIG", str(strict))
    reg = mobile_registry(mobile_home / "mobile" / "registry")
    home = tmp_path / "home"
    with pytest.raises(ParityError, match=r"onnx: max \|diff\| .* > 0"):
        export_version(mobile_version.version, ["onnx"], registry=reg, home=home, heldout_months=HELDOUT)
    assert not load_reports(mobile_version.version, home)["onnx"].passed  # the report is still written


def test_training_refuses_held_out_months_that_are_not_later() -> None:
    from click.testing import CliRunner

    from patterns.mobile.cli import mobile
    from patterns.mobile.model import MobileTrainingConfig

    with pytest.raises(ValueError, match="time-based split"):
        MobileTrainingConfig(train_months=(3,), heldout_months=(2, 4))
    result = CliRunner().invoke(mobile, ["train", "--train-months", "1-9", "--heldout-months", "9-12"])
    assert result.exit_code == 2 and "must all come after the training months" in result.output


def test_an_app_side_encoding_change_is_refused_before_any_export(
    mobile_version: ModelVersion, mobile_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app sending kilometres where the model learned miles moves scores by up to 0.09, yet the
    source model and every export see the same wrong inputs, so their parity passes. The golden
    rows, encoded again by this code, are what catches it."""
    import patterns.mobile.model as model
    from patterns.mobile.export import export_version
    from patterns.mobile.model import encoding_problems, mobile_registry

    assert encoding_problems(mobile_version) == []
    encode = model.encode

    def in_km(requests):  # type: ignore[no-untyped-def]
        raw = encode(requests)
        raw[:, 4] = np.rint(raw[:, 4] * 1.609344)
        return raw

    monkeypatch.setattr(model, "encode", in_km)
    problems = encoding_problems(mobile_version)
    assert len(problems) == 1 and problems[0].startswith("distance differs in ")
    reg = mobile_registry(mobile_home / "mobile" / "registry")
    home = tmp_path / "home"
    with pytest.raises(
        ParityError, match=r"encodes the app's inputs differently from training \(distance differs"
    ):
        export_version(mobile_version.version, ["onnx"], registry=reg, home=home, heldout_months=HELDOUT)
    assert not export_dir(mobile_version.version, home).exists()
