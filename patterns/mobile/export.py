"""Exports of a mobile version (TFLite x3, Core ML, ONNX), each gated by a parity report.

Layout: ``$MLPATTERNS_HOME/mobile/exports/<version>/`` holds the artifacts plus ``export.json``
(sha256, size and parity report per format, the version's feature fingerprint); the consistency
checker (``mlpatterns check``) reads these files and re-judges them under the shared thresholds.
``export_version`` raises ``ParityError`` naming every format outside its tolerance, after writing the report.

Core ML: converted from the ``tf.function`` concrete function (coremltools 9 cannot read Keras 3 or
SavedModel inputs), mlprogram in float32 precision. Its prediction runtime exists only on macOS:
on Linux the spec is validated (names, types, shapes, version and fingerprint metadata) and the
report says plainly that numeric parity was not run.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from patterns.mobile.client import run_interpreter
from patterns.mobile.inputs import INPUT_NAME, MOBILE_FEATURES, N_RAW, OUTPUT_NAME
from patterns.mobile.model import (
    build_module,
    encoding_problems,
    heldout,
    load_params,
    mobile_registry,
    predict_tf,
)
from patterns.mobile.parity import FORMATS, ParityError, ParityReport, compare
from shared import settings
from shared.consistency.config import ExportTolerance
from shared.registry import ModelVersion, Registry, sha256_file

__all__ = [
    "FILES",
    "build_artifact",
    "check_artifact",
    "export_dir",
    "export_version",
    "load_export",
    "load_reports",
    "run_artifact",
    "validate_coreml_spec",
]

FILES = {
    "tflite_float32": "model_float32.tflite",
    "tflite_dynamic_int8": "model_dynamic_int8.tflite",
    "tflite_int8": "model_int8.tflite",
    "coreml": "model.mlpackage.zip",
    "onnx": "model.onnx",
}
_REPRESENTATIVE_ROWS = 1000
_ZIP_TIME = (2013, 1, 1, 0, 0, 0)


def export_dir(version: str, home: Path | None = None) -> Path:
    return (home or settings.home()) / "mobile" / "exports" / version


def _representative(version: ModelVersion, rows: int = _REPRESENTATIVE_ROWS) -> np.ndarray:
    """Calibration rows for full-integer quantization, drawn from the version's TRAINING months."""
    from patterns.mobile.inputs import encode
    from shared.example.data import load_flights

    flights = load_flights(months=tuple(version.training["train_months"]))
    raw = encode(flights)
    pick = np.random.default_rng(0).choice(len(raw), min(rows, len(raw)), replace=False)
    return raw[pick]


def _tflite(params: dict[str, np.ndarray], variant: str, representative: np.ndarray | None) -> bytes:
    import tensorflow as tf

    module = build_module(params)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([module.predict.get_concrete_function()], module)
    if variant != "tflite_float32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "tflite_int8":
        if representative is None:
            raise ValueError("full-integer int8 needs representative data")
        rows = representative
        conv.representative_dataset = lambda: ([rows[i : i + 1]] for i in range(len(rows)))
        # Every float op in int8; the int32 input (character codes) and the float output stay as is.
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return bytes(conv.convert())


# coremltools's start-up warnings that say nothing actionable here: on Linux it cannot load its
# macOS prediction library (expected: specs are validated, not run), and it warns that
# scikit-learn and TensorFlow are newer than it was tested with (this conversion is tested).
_COREML_NOISE = (
    "Failed to load _ML",
    "is not supported. Minimum required version",
    "has not been tested with",
)


def _coremltools() -> Any:
    logger = logging.getLogger("coremltools")
    if not any(isinstance(f, _DropNoise) for f in logger.filters):
        logger.addFilter(_DropNoise())
    import coremltools

    return coremltools


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in _COREML_NOISE)


def _coreml(params: dict[str, np.ndarray], version: str, fingerprint: str) -> bytes:
    ct = _coremltools()

    module = build_module(params)
    mlmodel = ct.convert(
        [module.predict.get_concrete_function()],
        source="tensorflow",
        inputs=[ct.TensorType(name=INPUT_NAME, shape=(ct.RangeDim(1, 4096, 1), N_RAW), dtype=np.int32)],
        convert_to="mlprogram",
        compute_precision=ct.precision.FLOAT32,
        minimum_deployment_target=ct.target.iOS16,
    )
    spec = mlmodel.get_spec()
    ct.utils.rename_feature(spec, spec.description.output[0].name, OUTPUT_NAME)
    mlmodel = ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)
    mlmodel.short_description = "P(flight departs >= 15 min late) from raw schedule fields"
    mlmodel.version = version
    mlmodel.user_defined_metadata["feature_fingerprint"] = fingerprint
    mlmodel.user_defined_metadata["input_columns"] = ",".join(_raw_columns())
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / "model.mlpackage"
        mlmodel.save(str(package))
        return _zip_dir(package)


def _raw_columns() -> tuple[str, ...]:
    from patterns.mobile.inputs import RAW_COLUMNS

    return RAW_COLUMNS


def _zip_dir(folder: Path) -> bytes:
    # Fixed timestamps and sorted entries: the same package always zips to the same sha256.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}", _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return buf.getvalue()


def build_artifact(
    fmt: str,
    params: dict[str, np.ndarray],
    version: str,
    representative: np.ndarray | None = None,
    fingerprint: str | None = None,
) -> bytes:
    """The bytes of one export format of ``params`` (no parity check), stamped with ``fingerprint``
    (the model's feature fingerprint; default: the running ``MOBILE_FEATURES``)."""
    fingerprint = fingerprint or MOBILE_FEATURES.fingerprint()
    if fmt.startswith("tflite_"):
        return _tflite(params, fmt, representative)
    if fmt == "coreml":
        return _coreml(params, version, fingerprint)
    if fmt == "onnx":
        from patterns.mobile.onnx_graph import build_onnx

        return build_onnx(params, version, fingerprint)
    raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


def run_artifact(fmt: str, path: Path, raw: np.ndarray) -> np.ndarray:
    """Probabilities of an exported artifact on int32 ``raw`` rows, with that format's own runtime."""
    raw = np.ascontiguousarray(raw, dtype=np.int32)
    if fmt.startswith("tflite_"):
        from ai_edge_litert.interpreter import Interpreter

        return run_interpreter(Interpreter(model_path=str(path), num_threads=1), raw)
    if fmt == "onnx":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return np.asarray(sess.run([OUTPUT_NAME], {INPUT_NAME: raw})[0], np.float64).ravel()
    if fmt == "coreml":
        if sys.platform != "darwin":
            raise RuntimeError("Core ML prediction needs macOS")
        ct = _coremltools()

        with tempfile.TemporaryDirectory() as tmp:
            zipfile.ZipFile(path).extractall(tmp)
            model = ct.models.MLModel(str(Path(tmp) / "model.mlpackage"))
            chunks = [
                model.predict({INPUT_NAME: raw[i : i + 4096]})[OUTPUT_NAME] for i in range(0, len(raw), 4096)
            ]
        return np.asarray(np.concatenate(chunks), np.float64).ravel()
    raise ValueError(f"unknown format {fmt!r}")


def validate_coreml_spec(path: Path, version: str) -> list[str]:
    """Problems with a Core ML package's interface and metadata (empty list = valid). Runs on Linux."""
    ct = _coremltools()

    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(path).extractall(tmp)
        spec = ct.models.MLModel(str(Path(tmp) / "model.mlpackage"), skip_model_load=True).get_spec()
    desc = spec.description
    FT = ct.proto.FeatureTypes_pb2.ArrayFeatureType
    inputs = {i.name: i for i in desc.input}
    outputs = {o.name: o for o in desc.output}
    if list(inputs) != [INPUT_NAME]:
        problems.append(f"inputs are {list(inputs)}, expected [{INPUT_NAME!r}]")
    else:
        arr = inputs[INPUT_NAME].type.multiArrayType
        if arr.dataType != FT.INT32:
            problems.append(f"input {INPUT_NAME} has dataType {arr.dataType}, expected INT32")
        ranges = [(r.lowerBound, r.upperBound) for r in arr.shapeRange.sizeRanges]
        if len(ranges) != 2 or ranges[1] != (N_RAW, N_RAW) or ranges[0][0] != 1:
            problems.append(
                f"input {INPUT_NAME} shape ranges {ranges}, expected [(1, n), ({N_RAW}, {N_RAW})]"
            )
    if list(outputs) != [OUTPUT_NAME]:
        problems.append(f"outputs are {list(outputs)}, expected [{OUTPUT_NAME!r}]")
    elif outputs[OUTPUT_NAME].type.multiArrayType.dataType != FT.FLOAT32:
        problems.append(f"output {OUTPUT_NAME} is not FLOAT32")
    if desc.metadata.versionString != version:
        problems.append(f"metadata version {desc.metadata.versionString!r}, expected {version!r}")
    fp = desc.metadata.userDefined.get("feature_fingerprint")
    if fp != MOBILE_FEATURES.fingerprint():
        problems.append(f"metadata feature_fingerprint {fp!r}, expected {MOBILE_FEATURES.fingerprint()!r}")
    if spec.WhichOneof("Type") != "mlProgram":
        problems.append(f"model type {spec.WhichOneof('Type')}, expected mlProgram")
    return problems


def check_artifact(
    fmt: str,
    path: Path,
    version: str,
    source: np.ndarray,
    raw: np.ndarray,
    labels: np.ndarray,
    limits: ExportTolerance | None = None,
) -> ParityReport:
    """Parity report of one artifact against ``source`` probabilities on ``raw`` (held-out rows)."""
    report = ParityReport(fmt, path.name, path.stat().st_size, sha256_file(path))
    if fmt == "coreml":
        try:
            report.failures += [f"spec: {p}" for p in validate_coreml_spec(path, version)]
        except Exception as exc:  # a truncated or foreign file is a failed report, not a crash
            report.failures.append(f"could not read: {type(exc).__name__}: {exc}")
            return report
        if sys.platform != "darwin":
            report.ran = False
            report.note = "spec validated; numeric parity NOT run: Core ML predicts only on macOS"
            return report
    try:
        got = run_artifact(fmt, path, raw)
    except Exception as exc:
        report.failures.append(f"could not run: {type(exc).__name__}: {exc}")
        return report
    return compare(source, got, labels, report, limits)


def export_version(
    version: str,
    formats: Iterable[str] = FORMATS,
    registry: Registry | None = None,
    home: Path | None = None,
    heldout_months: tuple[int, ...] | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[ParityReport]:
    """Build each format, run its parity gate on the held-out months, write ``export.json``.

    Raises ``FingerprintMismatch`` for a model trained on other input definitions than this code's
    ``MOBILE_FEATURES``: its exports would be stamped with, and fed, inputs it never learned.
    """
    mv = (registry or mobile_registry()).get(version)
    mv.check_fingerprint(MOBILE_FEATURES.fingerprint())
    params = load_params(mv)
    formats = list(formats)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown formats {unknown} (known: {', '.join(FORMATS)})")
    if problems := encoding_problems(mv):
        raise ParityError(
            f"{version}: this code encodes the app's inputs differently from training "
            f"({'; '.join(problems)}): every format would be fed inputs the model never learned"
        )
    months = heldout_months or tuple(mv.training["heldout_months"])
    raw, labels = heldout(months)
    source = predict_tf(params, raw)
    rep = _representative(mv) if "tflite_int8" in formats else None
    out = export_dir(version, home)
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for fmt in formats:
        progress(f"{version}: building {fmt}")
        path = out / FILES[fmt]
        path.write_bytes(build_artifact(fmt, params, version, rep, mv.feature_fingerprint))
        progress(f"{version}: parity of {fmt} on {len(raw):,} held-out rows (months {months})")
        reports.append(check_artifact(fmt, path, version, source, raw, labels))
    previous = load_reports(version, home) if (out / "export.json").exists() else {}
    merged = {**previous, **{r.format: r for r in reports}}
    doc: dict[str, Any] = {
        "version": version,
        "feature_fingerprint": mv.feature_fingerprint,
        "heldout_months": list(months),
        "source_auc": reports[0].auc_source if reports else None,
        "formats": {f: merged[f].to_dict() for f in FORMATS if f in merged},
    }
    (out / "export.json").write_text(json.dumps(doc, indent=2))
    # Core ML off macOS did not run: reported (and refused by publish), but it is no parity failure.
    failed = [r for r in reports if r.failures]
    if failed:
        raise ParityError(
            f"{version}: export parity failed for "
            + "; ".join(f"{r.format}: {', '.join(r.failures)}" for r in failed)
            + f" (report: {out / 'export.json'})"
        )
    return reports


def load_export(version: str, home: Path | None = None) -> dict[str, Any]:
    """``export.json`` of ``version`` as written by the last ``export_version``."""
    path = export_dir(version, home) / "export.json"
    if not path.exists():
        raise FileNotFoundError(f"{version} has not been exported: run `mlpatterns mobile export {version}`")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def load_reports(version: str, home: Path | None = None) -> dict[str, ParityReport]:
    """The parity reports recorded by the last ``export_version`` of ``version``."""
    return {f: ParityReport.from_dict(r) for f, r in load_export(version, home)["formats"].items()}
