"""Settings from the environment: bad values are refused with the variable's name, never guessed."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared import settings


@pytest.mark.parametrize("raw", ["abc", "-1", "0", "70000", "8.5"])
def test_a_port_outside_1_to_65535_names_its_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("MLPATTERNS_REDIS_PORT", raw)
    with pytest.raises(
        settings.SettingError, match=r"MLPATTERNS_REDIS_PORT='.*': expected an integer from 1 to 65535"
    ):
        settings.redis_url()


def test_an_empty_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPATTERNS_REDIS_PORT", "")
    monkeypatch.delenv("MLPATTERNS_REDIS_URL", raising=False)
    assert settings.redis_url() == "redis://127.0.0.1:6379/0"
    monkeypatch.setenv("MLPATTERNS_REDIS_PORT", " 6390 ")
    assert settings.redis_url() == "redis://127.0.0.1:6390/0"


def test_env_float_refuses_non_finite_and_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings.env_float("MLPATTERNS_TEST_X", 1.5, 0) == 1.5
    for raw in ["nan", "inf", "-0.5", "x"]:
        monkeypatch.setenv("MLPATTERNS_TEST_X", raw)
        with pytest.raises(settings.SettingError, match="MLPATTERNS_TEST_X"):
            settings.env_float("MLPATTERNS_TEST_X", 1.5, 0)
    monkeypatch.setenv("MLPATTERNS_TEST_X", "2.25")
    assert settings.env_float("MLPATTERNS_TEST_X", 1.5, 0) == 2.25


def test_home_is_absolute_and_expands_the_user(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("MLPATTERNS_HOME", "~/mlp")
    assert settings.home() == tmp_path / "user" / "mlp"
    monkeypatch.setenv("MLPATTERNS_HOME", "relative/home")
    assert settings.home() == tmp_path / "relative" / "home"
    assert not (tmp_path / "~").exists()
    monkeypatch.setenv("MLPATTERNS_HOME", "")
    assert settings.home() == settings.project_root() / ".mlpatterns"


def test_home_that_is_a_file_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("MLPATTERNS_HOME", str(tmp_path / "afile"))
    with pytest.raises(settings.SettingError, match=r"MLPATTERNS_HOME=.*afile.*cannot use it as a directory"):
        settings.home()
