"""Threshold files: merged over the defaults, and refused when a check would ignore part of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.consistency.config import ThresholdsError, load_thresholds
from shared.errors import UserError


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "thresholds.toml"
    path.write_text(text)
    return path


def test_the_defaults_and_every_free_form_table_load(tmp_path: Path) -> None:
    assert load_thresholds().drift("month")["action"] == "ignore"
    path = _config(
        tmp_path,
        "[features.per_feature.distance]\nabs_tol = 0.5\n"
        "[prediction]\nrel_tol = 0.1\n"
        "[exports]\ndecision_threshold = 0.5\n"
        "[exports.candidates.coreml]\nmax_abs_diff = 0.01\n"
        '[drift.per_feature.dep_hour]\naction = "warn"\npsi = 1.0\n',
    )
    limits = load_thresholds(path)
    assert limits.feature("distance")["abs_tol"] == 0.5
    assert limits.feature("prediction")["rel_tol"] == 0.1
    assert limits.export("coreml").max_abs_diff == 0.01
    assert limits.export("coreml").decision_threshold == 0.5
    drift = limits.drift("dep_hour")
    assert (drift["action"], drift["psi"], drift["js"]) == ("warn", 1.0, 0.1)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[exports]\nmax_abs_dif = 0.1\n", "exports.max_abs_dif"),
        ("[features.per_feature.distance]\nabs_tl = 0.5\n", "features.per_feature.distance.abs_tl"),
        ("[exports.candidates.tflite_int8]\nmin_auc = 0.5\n", "exports.candidates.tflite_int8.min_auc"),
        ("[drift]\npsi_limit = 0.3\n", "drift.psi_limit"),
        ("[drfit]\npsi = 0.3\n", "drfit (no such section)"),
        ("[drift]\nper_feature = 3\n", "drift.per_feature (must be a table)"),
    ],
)
def test_a_key_no_check_reads_is_refused_naming_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = _config(tmp_path, text)
    with pytest.raises(ThresholdsError) as caught:
        load_thresholds(path)
    assert str(caught.value) == f"--config {path}: unknown threshold key(s) {key}"
    assert isinstance(caught.value, UserError)


def test_drift_actions_are_checked_when_the_file_loads(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[drift]\ndefault_action = "fial"\ndefault_missing_action = "gate"\n'
        '[drift.per_feature.month]\naction = "nope"\nmissing_action = "no"\n',
    )
    with pytest.raises(ThresholdsError) as caught:
        load_thresholds(path)
    assert str(caught.value) == (
        f"--config {path}: drift actions must be fail, warn or ignore: "
        "drift.default_action = 'fial', drift.default_missing_action = 'gate', "
        "drift.per_feature.month.action = 'nope', drift.per_feature.month.missing_action = 'no'"
    )


def test_a_toml_syntax_error_names_the_config_file(tmp_path: Path) -> None:
    path = _config(tmp_path, "[exports\nmax_abs_diff = 1\n")
    with pytest.raises(ThresholdsError, match=r"^--config .*thresholds\.toml is not valid TOML: Expected"):
        load_thresholds(path)


def test_the_environment_variable_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPATTERNS_CHECK_CONFIG", str(_config(tmp_path, "[exports]\nmax_abs_dif = 1\n")))
    with pytest.raises(ThresholdsError, match=r"exports\.max_abs_dif"):
        load_thresholds()
