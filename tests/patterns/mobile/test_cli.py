"""The ``mobile`` commands refuse a caller's mistake in one line, naming what was wrong, before any
training, export or manifest write starts; channel names never leave the channels folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner, Result

import patterns.mobile.model as mobile_model
from patterns.mobile.cli import mobile
from patterns.mobile.manifest import Channel, ChannelNameError, ManifestError, channel_path
from shared.errors import UserError
from shared.registry import ModelVersion


def _run(*args: str) -> Result:
    return CliRunner().invoke(mobile, list(args))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLPATTERNS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLPATTERNS_MOBILE_CHANNEL", raising=False)
    return tmp_path / "home"


def _staged(home: Path, name: str = "stable") -> Channel:
    """A channel with v1 live and v2 the candidate at 10 %."""
    chan = Channel(name, home)
    for version, percent in (("v1", 0.0), ("v2", 10.0)):
        src = home / f"{version}.tflite"
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(version.encode())
        chan.publish(chan.upload(version, src, "1.0.0", "fp"), percent)
    return chan


@pytest.mark.parametrize("name", ["../x", "/tmp/x/escape", "a.b", "a/b", "", "stable\n"])
def test_a_channel_name_must_be_a_plain_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ChannelNameError, match=re.escape(f"channel name {name!r} is not allowed")) as caught:
        channel_path(name, tmp_path)
    assert isinstance(caught.value, UserError)


def test_plain_channel_names_stay_in_the_channels_folder(tmp_path: Path) -> None:
    for name in ("stable", "beta-testers", "android_onnx-2"):
        assert channel_path(name, tmp_path) == tmp_path / "mobile" / "channels" / f"{name}.json"


def test_commands_never_read_or_write_a_manifest_outside_the_home(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "x" / "escape"
    outside.parent.mkdir()
    outside.with_suffix(".json").write_text(json.dumps(_staged(home).load() | {"channel": "outside"}))
    before = outside.with_suffix(".json").read_text()
    for args in (["status"], ["rollout", "--percent", "50"], ["rollback"], ["publish", "v1"]):
        result = _run(*args, "--channel", str(outside))
        assert result.exit_code == 1, result.output
        assert result.output.startswith(f"Error: channel name {str(outside)!r} is not allowed"), result.output
        assert "channel outside" not in result.output  # the foreign manifest was not shown
    assert outside.with_suffix(".json").read_text() == before
    assert sorted(p.name for p in outside.parent.iterdir()) == ["escape.json"]


def test_manifest_errors_are_user_errors_and_still_runtime_errors() -> None:
    assert issubclass(ManifestError, UserError) and issubclass(ManifestError, RuntimeError)


def test_rollback_with_nothing_to_roll_back_is_one_error_line(home: Path) -> None:
    result = _run("rollback")
    assert result.exit_code == 1
    assert result.output == "Error: stable: no candidate and no previous version to roll back to\n"


def test_rollout_without_a_candidate_is_one_error_line(home: Path) -> None:
    result = _run("rollout", "--percent", "50")
    assert result.exit_code == 1
    assert result.output == "Error: stable has no candidate to roll out (publish one first)\n"


@pytest.mark.parametrize("percent", ["150", "-1", "100.5"])
def test_rollout_refuses_a_percentage_outside_0_to_100(home: Path, percent: str) -> None:
    chan = _staged(home)
    result = _run("rollout", "--percent", percent)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--percent': {float(percent)} is not in the range 0<=x<=100" in result.output
    assert chan.load()["rollout_percent"] == 10.0 and chan.load()["candidate"]["version"] == "v2"


def test_status_refuses_a_negative_device_count(home: Path) -> None:
    result = _run("status", "--devices", "-5")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--devices': -5 is not in the range x>=0" in result.output
    assert _run("status", "--devices", "0").exit_code == 0


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Configs ``mobile train`` would have trained with (none is trained; a stand-in version is)."""
    configs: list[Any] = []

    def record(config: Any, **_: Any) -> Any:
        configs.append(config)
        return SimpleNamespace(version="v7", metrics={"heldout_auc": 0.5})

    monkeypatch.setattr(mobile_model, "train_mobile", record)
    return configs


@pytest.mark.parametrize(
    ("args", "option", "message"),
    [
        (["--train-months", "0-3"], "--train-months", "months must be within 1-12, got '0-3'"),
        (
            ["--train-months", "abc"],
            "--train-months",
            "expected months like 1-9 or 1,2,3, got 'abc'",
        ),
        (
            ["--train-months", "5-3"],
            "--train-months",
            "the range '5-3' is empty: write the first month first",
        ),
        (
            ["--heldout-months", "13"],
            "--heldout-months",
            "months must be within 1-12, got '13'",
        ),
        (["--heldout-months", "10-"], "--heldout-months", "expected months like 1-9 or 1,2,3"),
    ],
)
def test_train_refuses_bad_months_naming_the_option(
    home: Path, no_training: list[Any], args: list[str], option: str, message: str
) -> None:
    result = _run("train", *args)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': {message}" in result.output
    assert no_training == []


def test_train_reads_months_and_ranges(home: Path, no_training: list[Any]) -> None:
    result = _run("train", "--train-months", "2-4", "--heldout-months", "12")
    assert result.exit_code == 0, result.output
    assert "registered mobile v7" in result.output
    assert [(c.train_months, c.heldout_months) for c in no_training] == [((2, 3, 4), (12,))]
    overlap = _run("train", "--train-months", "1-10")  # valid months, but no time split
    assert overlap.exit_code == 2 and "Invalid value for --heldout-months: held-out months" in overlap.output


@pytest.fixture
def mobile_cli_home(mobile_home: Path, mobile_version: ModelVersion, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLPATTERNS_HOME", str(mobile_home))
    return mobile_home


def test_export_refuses_bad_options_before_the_progress_bar(
    mobile_cli_home: Path, mobile_version: ModelVersion
) -> None:
    for args, expected in (
        (["--formats", "bogus"], "Invalid value for '--formats': unknown formats bogus (known: tflite, "),
        (["--formats", "onnx,tflite_int4"], "Invalid value for '--formats': unknown formats tflite_int4 "),
        (["--heldout-months", "abc"], "Invalid value for '--heldout-months': expected months like 1-9"),
        (["--heldout-months", "0"], "Invalid value for '--heldout-months': months must be within 1-12"),
    ):
        result = _run("export", mobile_version.version, *args)
        assert result.exit_code == 2, result.output
        assert expected in result.output and f"export {mobile_version.version}:" not in result.output


def test_export_of_an_unknown_version_is_one_error_line(
    mobile_cli_home: Path,
) -> None:
    result = _run("export", "v9")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: no model version 'v9' in "), result.output
    assert "export v9" not in result.output and "Traceback" not in result.output
