"""The shared commands, run as a user would: `mlpatterns train`, `models list|show`, `features show`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _mlpatterns(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"MLPATTERNS_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "patterns", *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_train_then_show_prints_metrics_and_verified_checksums(tmp_path: Path) -> None:
    trained = _mlpatterns(
        "train", "--train-months", "1", "--valid-months", "2", "--max-iter", "30", home=tmp_path
    )
    assert trained.returncode == 0, trained.stderr
    assert "registered v1" in trained.stdout
    shown = _mlpatterns("models", "show", "v1", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "valid_auc" in shown.stdout and "baseline_auc" in shown.stdout
    assert "all artifacts match their sha256" in shown.stdout
    listed = _mlpatterns("models", "list", home=tmp_path)
    assert listed.stdout.splitlines()[1].startswith("v1")

    model = tmp_path / "registry" / "v1" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    corrupted = _mlpatterns("models", "show", "v1", home=tmp_path)
    assert corrupted.returncode == 1 and "CORRUPTED" in corrupted.stdout
    as_json = _mlpatterns("models", "show", "v1", "--json", home=tmp_path)
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["integrity"].startswith("CORRUPTED")


def test_unknown_version_and_bad_months_are_clear_errors(tmp_path: Path) -> None:
    missing = _mlpatterns("models", "show", "v7", home=tmp_path)
    assert missing.returncode != 0 and "no model version 'v7'" in missing.stderr
    bad = _mlpatterns("train", "--train-months", "0-13", home=tmp_path)
    assert bad.returncode != 0 and "months must be within 1-12" in bad.stderr
    leaky = _mlpatterns("train", "--train-months", "2", "--valid-months", "1-2", home=tmp_path)
    assert leaky.returncode == 2 and "must all come after the training months" in leaky.stderr
    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").iterdir())


def test_help_explains_every_command() -> None:
    out = subprocess.run([sys.executable, "-m", "patterns", "--help"], capture_output=True, text=True).stdout
    for command in (
        "train",
        "models",
        "features",
        "services",
        "deploy",
        "rollback",
        "status",
        "check",
        "rest",
        "batch",
        "stream",
        "mobile",
    ):
        assert f"  {command}" in out
    features = subprocess.run(
        [sys.executable, "-m", "patterns", "features", "show"], capture_output=True, text=True
    ).stdout
    assert "carrier_dep_delay_24h" in features and "ttl_seconds=10800" in features


def test_a_bad_setting_is_one_error_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    env = os.environ | {"MLPATTERNS_HOME": str(tmp_path), "MLPATTERNS_REDIS_PORT": "abc"}
    run = [sys.executable, "-m", "patterns", "services", "status", "redis"]
    plain = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert plain.returncode == 1
    assert plain.stderr.strip() == "Error: MLPATTERNS_REDIS_PORT='abc': expected an integer from 1 to 65535"
    debug = subprocess.run(
        run, env=env | {"MLPATTERNS_DEBUG": "1"}, capture_output=True, text=True, timeout=60
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "SettingError" in debug.stderr
