"""``scripts/test.py`` (``make test``): two pytest halves side by side, one exit status for both."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_TESTS = """
import pytest

@pytest.mark.servers
def test_needs_a_server():
    assert {ok}

def test_needs_none():
    assert {ok_units}
"""


def _run(
    tmp_path: Path, *args: str, ok: bool = True, ok_units: bool = True
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "test_sample.py"
    path.write_text(_TESTS.format(ok=ok, ok_units=ok_units))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "MLPATTERNS_TEST_SERIAL")}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "test.py"), str(path), "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_both_halves_run_and_both_outputs_are_shown(tmp_path: Path) -> None:
    run = _run(tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    servers, rest = run.stdout.split("the tests that need no server")  # the server half as it went
    assert "1 passed, 1 deselected" in servers and "1 passed, 1 deselected" in rest
    assert "servers half: exit 0; the rest: exit 0" in run.stdout


@pytest.mark.parametrize(("ok", "ok_units"), [(False, True), (True, False)])
def test_a_failure_in_either_half_fails_the_run(tmp_path: Path, ok: bool, ok_units: bool) -> None:
    run = _run(tmp_path, ok=ok, ok_units=ok_units)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed" in run.stdout


def test_a_marker_expression_runs_one_pytest_as_given(tmp_path: Path) -> None:
    run = _run(tmp_path, "-m", "not servers")
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("passed") == 1 and "servers half" not in run.stdout
