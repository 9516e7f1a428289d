"""The shared commands, run as a user would: `mlpatterns train`, `models list|show`, `features show`."""

from __future__ import annotations

import json
import os
import shutil
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
    assert "'delayed' from 0." in trained.stdout and "(best F1 on validation" in trained.stdout
    shown = _mlpatterns("models", "show", "v1", home=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "valid_auc" in shown.stdout and "baseline_auc" in shown.stdout
    assert "all artifacts match their sha256" in shown.stdout
    listed = _mlpatterns("models", "list", home=tmp_path)
    assert listed.stdout.splitlines()[1].startswith("v1")

    # A copy of v1 named v3 still says v1 inside: refused, and listed as such beside the good one.
    registry = tmp_path / "registry"
    shutil.copytree(registry / "v1", registry / "v3")
    shutil.copytree(registry / "v1", registry / "v1.bak")  # not a version name: not listed
    shutil.copytree(registry / "v1", registry / "v4")
    (registry / "v4" / "manifest.json").write_text('{"version": "v4", "crea')  # a truncated write
    copied = _mlpatterns("models", "show", "v3", home=tmp_path)
    assert copied.returncode == 1
    assert "manifest says version 'v1' but the directory is v3" in copied.stderr
    listed = _mlpatterns("models", "list", home=tmp_path)
    assert listed.returncode == 1
    rows = listed.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["v1", "v3", "v4"]
    assert rows[1].startswith("v3       CORRUPTED: ")
    assert rows[2].startswith("v4       CORRUPTED: ") and "not a readable manifest" in rows[2]
    shutil.rmtree(registry / "v3")
    shutil.rmtree(registry / "v4")

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


def test_a_version_name_outside_the_registry_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside" / "x").mkdir(parents=True)
    (tmp_path / "outside" / "x" / "manifest.json").write_text("{}")
    home = tmp_path / "home"
    for name in ("../../outside/x", str(tmp_path / "outside" / "x")):  # home/registry/../../outside
        shown = _mlpatterns("models", "show", name, home=home)
        assert shown.returncode == 1
        assert shown.stderr.strip() == f"Error: model version must look like v1, v2, ..., got {name!r}"


def test_an_empty_registry_says_where_it_looked(tmp_path: Path) -> None:
    listed = _mlpatterns("models", "list", home=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout.strip() == f"no models in {tmp_path / 'registry'} yet: run `mlpatterns train`"


def test_train_options_name_what_is_wrong_with_them(tmp_path: Path) -> None:
    cases = {
        ("--train-months", "abc"): "'--train-months'",
        ("--valid-months", "10-x"): "'--valid-months'",
    }
    for args, option in cases.items():
        bad = _mlpatterns("train", *args, home=tmp_path)
        assert bad.returncode == 2 and option in bad.stderr
        assert f"expected months like 1-9 or 1,2,3, got {args[1]!r}" in bad.stderr
    empty = _mlpatterns("train", "--train-months", "9-1", home=tmp_path)
    assert empty.returncode == 2 and "'--train-months'" in empty.stderr
    assert "the range '9-1' is empty" in empty.stderr and "within 1-12" not in empty.stderr
    no_iterations = _mlpatterns("train", "--max-iter", "0", home=tmp_path)
    assert no_iterations.returncode == 2
    assert "Invalid value for '--max-iter': 0 is not in the range x>=1" in no_iterations.stderr
    assert "Traceback" not in no_iterations.stderr
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
    assert "computed as of sched_ts - 3600 s" in features


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
