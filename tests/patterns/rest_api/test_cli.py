"""The ``rest`` commands and settings refuse a caller's mistake in one line, naming what was wrong.

Nothing here serves traffic: ``run_app`` is replaced by a recorder, so a refused option proves it was
refused before uvicorn could bind a port.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

import patterns.rest_api.cli as rest_cli
from patterns.rest_api.cli import rest
from patterns.rest_api.nginx import RestFront, front_port
from patterns.rest_api.switch import ColourConfig, RestSwitch, default_rest_gates
from shared.deploy import Slot
from shared.deploy.gates import ShadowGate
from shared.registry import ModelVersion
from shared.settings import SettingError


@pytest.fixture
def served(
    rest_home: Path, rest_model: ModelVersion, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[str, int]]:
    """(host, port) of every ``run_app`` call of ``rest serve`` in this test (none binds a port)."""
    calls: list[tuple[str, int]] = []
    monkeypatch.setenv("MLPATTERNS_HOME", str(rest_home))

    def run_app(app: Any, host: str, port: int, log_level: str = "warning") -> None:
        calls.append((host, port))

    monkeypatch.setattr(rest_cli, "run_app", run_app)
    return calls


def _serve(*args: str) -> Result:
    return CliRunner().invoke(rest, ["serve", "--store", "embedded", "--no-log", *args])


@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_serve_refuses_a_port_outside_1_to_65535(served: list[tuple[str, int]], port: str) -> None:
    result = _serve("--port", port)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--port': {port} is not in the range 1<=x<=65535" in result.output
    assert served == []  # 70000 used to bind port 4464 (70000 mod 65536)


def test_serve_takes_a_port_in_range(served: list[tuple[str, int]]) -> None:
    result = _serve("--port", "65535", "--version", "v1")
    assert result.exit_code == 0, result.output
    assert served == [("127.0.0.1", 65535)]


def test_serve_refuses_an_empty_micro_batch(served: list[tuple[str, int]]) -> None:
    result = _serve("--max-batch-rows", "0")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--max-batch-rows': 0 is not in the range x>=1" in result.output
    assert served == []


def test_serve_an_unknown_version_is_one_error_line(
    served: list[tuple[str, int]],
) -> None:
    result = _serve("--version", "v9", "--port", "18901")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: no model version 'v9' in "), result.output
    assert "(known: v1, v2)" in result.output and "Traceback" not in result.output
    assert served == []


def test_serve_with_an_empty_registry_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, served: list[tuple[str, int]]
) -> None:
    monkeypatch.setenv("MLPATTERNS_HOME", str(tmp_path))
    result = _serve("--port", "18901")
    assert result.exit_code == 1, result.output
    assert result.output == (
        f"Error: the registry at {tmp_path / 'registry'} is empty: run `mlpatterns train` first\n"
    )
    assert served == []


def test_python_m_rest_api_prints_the_error_line(rest_home: Path, rest_model: ModelVersion) -> None:
    # `python -m patterns.rest_api` runs the group alone: it must handle the error itself.
    env = os.environ | {"MLPATTERNS_HOME": str(rest_home)}
    env.pop("MLPATTERNS_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "patterns.rest_api", "serve", "--version", "v9", "--store", "embedded"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("Error: no model version 'v9' in "), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("since", "until"), [("2013-06-02", "2013-06-01"), ("2013-06-01T09:00", "2013-06-01T09:00")]
)
def test_load_features_refuses_an_empty_window_and_keeps_the_state(
    new_rest_store: Callable[[], Any], since: str, until: str
) -> None:
    info = new_rest_store()
    client = redis.Redis.from_url(info.url)
    client.set(f"{info.prefix}:sentinel", "kept")
    args = ["load-features", "--since", since, "--until", until, "--clear"]
    result = CliRunner().invoke(rest, [*args, "--redis-url", info.url, "--redis-prefix", info.prefix])
    assert result.exit_code == 2, result.output
    assert f"Error: --since {since} must be before --until {until}" in result.output
    assert client.get(f"{info.prefix}:sentinel") == b"kept"  # --clear did not run


def test_load_features_help_gives_the_retention_of_each_source() -> None:
    from shared.example.flights import FLIGHT_FEATURES

    since = next(o for o in rest_cli.load_features.params if o.name == "since_text")
    told = {src: float(h) for h, src in re.findall(r"(\d+) h for (\w+)", since.help or "")}
    retention = {s.name: FLIGHT_FEATURES.retention_seconds(s.name) / 3600 for s in FLIGHT_FEATURES.sources}
    assert told == retention


def test_staging_a_colour_on_a_taken_port_is_refused_before_anything_starts(
    tmp_path: Path, rest_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPATTERNS_HOME", str(rest_home))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ColourConfig(ports={Slot.BLUE: port, Slot.GREEN: port}, token="t", run_dir=tmp_path)
        switch = RestSwitch(config, front=RestFront(name="test_taken_port"))
        with pytest.raises(RuntimeError, match=f"port {port} for .* is taken by another process"):
            switch.stage(Slot.BLUE, "v1")
    assert not (tmp_path / f"{Slot.BLUE}.pid").exists()


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("MLPATTERNS_REST_BLUE_PORT", "70000", "expected an integer from 1 to 65535"),
        ("MLPATTERNS_REST_GREEN_PORT", "abc", "expected an integer from 1 to 65535"),
    ],
)
def test_colour_ports_from_the_environment_are_checked(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=f"^{name}='{value}': {expected}$"):
        ColourConfig()


def test_colour_ports_default_and_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLPATTERNS_REST_BLUE_PORT", raising=False)
    monkeypatch.setenv("MLPATTERNS_REST_GREEN_PORT", "18902")
    assert dict(ColourConfig().ports) == {Slot.BLUE: 8101, Slot.GREEN: 18902}


def test_the_nginx_port_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPATTERNS_REST_NGINX_PORT", "70000")
    with pytest.raises(
        SettingError, match=r"^MLPATTERNS_REST_NGINX_PORT='70000': expected an integer from 1"
    ):
        front_port()
    monkeypatch.setenv("MLPATTERNS_REST_NGINX_PORT", "18903")
    assert front_port() == 18903


def test_the_shadow_timeout_from_the_environment_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPATTERNS_REST_SHADOW_TIMEOUT", "-1")
    with pytest.raises(SettingError, match=r"^MLPATTERNS_REST_SHADOW_TIMEOUT='-1': expected a number >= 0$"):
        default_rest_gates()
    monkeypatch.setenv("MLPATTERNS_REST_SHADOW_TIMEOUT", "0")  # 0 still leaves the shadow phase out
    assert not any(isinstance(g, ShadowGate) for g in default_rest_gates())
    monkeypatch.setenv("MLPATTERNS_REST_SHADOW_TIMEOUT", "7.5")
    assert [g.timeout_s for g in default_rest_gates() if isinstance(g, ShadowGate)] == [7.5]


def test_bento_workers_from_the_environment_are_checked() -> None:
    # The decorator reads the setting at import: a fresh interpreter imports the module.
    env = os.environ | {"MLPATTERNS_BENTO_WORKERS": "0", "BENTOML_DO_NOT_TRACK": "true"}
    proc = subprocess.run(
        [sys.executable, "-c", "import patterns.rest_api.bento_service"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "SettingError: MLPATTERNS_BENTO_WORKERS='0': expected an integer >= 1" in proc.stderr
