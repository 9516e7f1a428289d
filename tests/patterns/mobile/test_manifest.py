"""Bucketing, channel operations and the reference client (tampered files are refused)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from patterns.mobile.cli import mobile
from patterns.mobile.client import MobileClient, TamperedModel
from patterns.mobile.export import FILES, export_dir
from patterns.mobile.inputs import MOBILE_FEATURES
from patterns.mobile.manifest import Channel, ManifestError, bucket, version_tuple
from patterns.mobile.model import heldout, load_params, predict_tf
from patterns.mobile.parity import tolerance
from patterns.mobile.switch import stage_entry
from shared.example.data import load_flights
from shared.registry import FingerprintMismatch, ModelVersion

HELDOUT = (10,)  # same held-out month as conftest.py


def test_bucketing_is_stable_and_matches_the_percentage() -> None:
    devices = [f"device-{i}" for i in range(100_000)]
    buckets = np.array([bucket(d, "stable") for d in devices])
    assert buckets.min() >= 0 and buckets.max() < 100
    np.testing.assert_array_equal(buckets, [bucket(d, "stable") for d in devices])  # stable per device
    for pct in (1, 10, 50, 90):
        share = float(np.mean(buckets < pct))
        assert abs(share - pct / 100) < 0.005, (pct, share)
    # Another channel shuffles devices independently (no fixed set of guinea pigs).
    other = np.array([bucket(d, "beta") for d in devices[:10_000]])
    assert np.mean((buckets[:10_000] < 10) & (other < 10)) < 0.02


def _entry(chan: Channel, version: str, tmp: Path, payload: bytes, min_app: str = "1.0.0"):
    src = tmp / f"{version}.tflite"
    src.write_bytes(payload)
    return chan.upload(version, src, min_app, "fp")


def test_publish_rollout_rollback(tmp_path: Path) -> None:
    chan = Channel("stable", tmp_path)
    chan.publish(_entry(chan, "v1", tmp_path, b"one"))
    chan.publish(_entry(chan, "v2", tmp_path, b"two", min_app="2.0.0"), percent=10)
    devices = [f"d{i}" for i in range(5000)]
    at10 = {d for d in devices if chan.resolve(d).version == "v2"}
    assert 0.08 < len(at10) / len(devices) < 0.12
    chan.rollout(50)
    at50 = {d for d in devices if chan.resolve(d).version == "v2"}
    assert at10 <= at50 and 0.47 < len(at50) / len(devices) < 0.53  # monotone: nobody flips back
    some = sorted(at50)[0]
    assert chan.resolve(some, app_version="1.9.3").version == "v1"  # too old for v2: stays on live
    assert chan.resolve(some, app_version="0.9") is None  # too old for any model
    # Missing parts count as 0: app "2.0" meets "2.0.0", app "1.0" meets live's "1.0.0".
    assert chan.resolve(some, app_version="2.0").version == "v2"
    assert chan.resolve(some, app_version="1.0").version == "v1"
    assert version_tuple("2.0") == version_tuple("2.0.0") < version_tuple("2.0.1") < version_tuple("2.1")
    chan.rollback()
    assert {chan.resolve(d).version for d in devices} == {"v1"}
    chan.publish(_entry(chan, "v2", tmp_path, b"two"), percent=5)
    doc = chan.rollout(100)
    assert doc["live"]["version"] == "v2" and doc["previous"]["version"] == "v1" and doc["candidate"] is None
    chan.rollback()  # no candidate: previous comes back
    assert chan.load()["live"]["version"] == "v1"
    with pytest.raises(ManifestError):
        chan.rollback()
    with pytest.raises(ManifestError):
        chan.rollout(150)


def test_client_downloads_verifies_and_runs(
    exported: dict, mobile_home: Path, mobile_version: ModelVersion, tmp_path: Path
) -> None:
    chan = Channel("stable", mobile_home)
    entry = stage_entry(chan, mobile_version.version)
    chan.publish(entry)
    client = MobileClient(chan.path, "device-42", tmp_path / "cache")
    assert client.sync() == entry and client.version == mobile_version.version
    # Against the TensorFlow source graph (not the interpreter the client itself runs), within the
    # float32 export's parity tolerance.
    params = load_params(mobile_version)
    atol = tolerance("tflite_float32").max_abs_diff
    raw, _ = heldout(HELDOUT)
    np.testing.assert_allclose(
        client.predict_raw(raw[:500]), predict_tf(params, raw[:500]), rtol=0, atol=atol
    )
    # Request dicts as the app sends them: real held-out flights, vs the rows heldout() encoded.
    fields = ["year", "month", "day", "hour", "minute", "carrier", "origin", "dest", "distance"]
    requests = load_flights(months=HELDOUT)[fields].head(50).to_dict("records")
    got = client.predict(requests)
    assert got.shape == (50,)
    np.testing.assert_allclose(got, predict_tf(params, raw[:50]), rtol=0, atol=atol)


def test_client_refuses_a_tampered_model(
    exported: dict, mobile_home: Path, mobile_version: ModelVersion, tmp_path: Path
) -> None:
    chan = Channel("tamper", mobile_home)
    entry = stage_entry(chan, mobile_version.version)
    chan.publish(entry)
    cdn_file = Path(entry.url.removeprefix("file://"))
    data = bytearray(cdn_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte on the CDN
    cdn_file.write_bytes(bytes(data))
    client = MobileClient(chan.path, "device-7", tmp_path / "cache")
    with pytest.raises(TamperedModel, match="refusing"):
        client.sync()
    # Nothing is left behind, not even the partial download (*.part).
    assert client.version is None and list((tmp_path / "cache").iterdir()) == []
    with pytest.raises(RuntimeError, match="no model"):
        client.predict_raw(np.zeros((1, 13), np.int32))


def test_an_existing_channel_keeps_its_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rollout / rollback of an ONNX channel must not relabel it tflite_float32 (URLs are .onnx files)."""
    monkeypatch.setenv("MLPATTERNS_HOME", str(tmp_path))
    chan = Channel("android-onnx", fmt="onnx")
    chan.publish(_entry(chan, "v1", tmp_path, b"one"))
    chan.publish(_entry(chan, "v2", tmp_path, b"two"), percent=10)
    runner = CliRunner()
    for args in (["rollout", "--percent", "50"], ["rollback"], ["status"]):
        result = runner.invoke(mobile, [*args, "--channel", "android-onnx"])
        assert result.exit_code == 0, result.output
        assert "onnx" in result.output and Channel("android-onnx").load()["format"] == "onnx"
    assert Channel("android-onnx").format == "onnx"
    with pytest.raises(ManifestError, match="keeps its format"):
        Channel("android-onnx", fmt="tflite_float32")
    refused = runner.invoke(mobile, ["publish", "v3", "--channel", "android-onnx", "--format", "tflite_int8"])
    assert refused.exit_code == 1 and "keeps its format" in refused.output


def test_publishing_coreml_needs_measured_parity(
    exported: dict, mobile_home: Path, mobile_version: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Core ML predicts only on macOS: there its parity is measured and publishing needs no flag;
    elsewhere the export is unverified and publishing is refused unless --allow-unverified."""
    can_predict = sys.platform == "darwin"
    report = exported["coreml"]
    assert report.ran is can_predict and report.failures == [], report
    if can_predict:
        assert report.max_abs_diff <= tolerance("coreml").max_abs_diff
    monkeypatch.setenv("MLPATTERNS_HOME", str(mobile_home))
    runner = CliRunner()
    args = ["publish", mobile_version.version, "--channel", "ios", "--format", "coreml"]
    assert "--allow-unverified" in runner.invoke(mobile, ["publish", "--help"]).output
    if can_predict:
        published = runner.invoke(mobile, args)
    else:
        refused = runner.invoke(mobile, args)
        assert refused.exit_code == 1
        assert "parity was not run" in refused.output and "--allow-unverified" in refused.output
        assert not Channel("ios", mobile_home).path.exists()
        published = runner.invoke(mobile, [*args, "--allow-unverified"])
    assert published.exit_code == 0, published.output
    live = Channel("ios", mobile_home).load()["live"]
    assert live["version"] == mobile_version.version and live["url"].endswith(FILES["coreml"])


def test_an_export_for_other_inputs_is_not_published(
    exported: dict, mobile_home: Path, mobile_version: ModelVersion, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    shutil.copytree(export_dir(mobile_version.version, mobile_home), export_dir(mobile_version.version, home))
    path = export_dir(mobile_version.version, home) / "export.json"
    doc = json.loads(path.read_text())
    entry = stage_entry(Channel("stable", home), mobile_version.version)
    assert entry.feature_fingerprint == doc["feature_fingerprint"] == MOBILE_FEATURES.fingerprint()
    path.write_text(json.dumps(doc | {"feature_fingerprint": "0" * 16}))
    with pytest.raises(FingerprintMismatch, match="0000000000000000"):
        stage_entry(Channel("stable", home), mobile_version.version)
