"""Bucketing, channel operations and the reference client (tampered files are refused)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from patterns.mobile.client import MobileClient, TamperedModel
from patterns.mobile.export import FILES, export_dir, run_artifact
from patterns.mobile.manifest import Channel, ManifestError, bucket
from patterns.mobile.model import heldout
from patterns.mobile.switch import stage_entry
from shared.registry import ModelVersion

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
    raw, _ = heldout(HELDOUT)
    got = client.predict_raw(raw[:500])
    exported_file = export_dir(mobile_version.version, mobile_home) / FILES["tflite_float32"]
    want = run_artifact("tflite_float32", exported_file, raw[:500])
    np.testing.assert_allclose(got, want, atol=1e-6)
    one = client.predict([dict(year=2013, month=10, day=1, hour=17, minute=30, carrier="B6", origin="JFK",
                               dest="BOS", distance=187)])  # fmt: skip
    assert one.shape == (1,) and 0 < one[0] < 1


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
    assert client.version is None and not list((tmp_path / "cache").glob("*.tflite"))
    with pytest.raises(RuntimeError, match="no model"):
        client.predict_raw(np.zeros((1, 13), np.int32))
