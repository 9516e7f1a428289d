"""``make clean`` and ``.ci/run`` stop the servers they must, run on a copy of each script in a
temporary checkout where ``mlpatterns`` and ``make`` are stand-ins that only record their calls."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared import settings

_ROOT = settings.project_root()


def _script(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    """A checkout whose ``.venv/bin/mlpatterns`` appends ``<services dir>|<args>`` to ``calls.log``.

    ``services status`` prints ``status.txt`` (the servers' states) and exits 1.
    """
    root = tmp_path / "checkout"
    root.mkdir()
    _script(
        root / ".venv/bin/mlpatterns",
        'echo "${MLPATTERNS_SERVICES_DIR:-}|$*" >> "$(dirname "$0")/../../calls.log"\n'
        'if [ "$1 $2" = "services status" ]; then cat "$(dirname "$0")/../../status.txt"; exit 1; fi\n'
        'exit "${FAKE_MLP_EXIT:-0}"\n',
    )
    _script(root / ".venv/bin/python", f'exec "{sys.executable}" "$@"\n')
    return root


def _calls(root: Path) -> list[str]:
    log = root / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("down_fails", [False, True])
def test_make_clean_stops_the_servers_before_deleting_their_pid_files(
    checkout: Path, down_fails: bool
) -> None:
    shutil.copy(_ROOT / "Makefile", checkout / "Makefile")
    (checkout / ".services" / "redis").mkdir(parents=True)
    env = {**os.environ, "FAKE_MLP_EXIT": "1" if down_fails else "0"}
    env.pop("MLPATTERNS_SERVICES_DIR", None)
    res = subprocess.run(["make", "clean"], cwd=checkout, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _calls(checkout) == [f"{checkout}/.services|services down"]
    assert not (checkout / ".services").exists() and not (checkout / ".venv").exists()


def _status(running: set[str]) -> str:
    names = ["redis", "kafka", "hbase", "nginx"]
    return "".join(f"{n:<6} {'running' if n in running else 'stopped':<9} port 1     pids -\n" for n in names)


@pytest.mark.parametrize(
    ("make_exit", "running_before", "stopped_after"),
    [
        (3, set(), "redis kafka hbase nginx"),  # `services up` failed partway: still torn down
        (0, set(), "redis kafka hbase nginx"),
        (1, {"redis", "hbase"}, "kafka nginx"),  # a developer's servers are left alone
    ],
)
def test_ci_run_stops_the_servers_it_started_and_keeps_makes_status(
    checkout: Path, make_exit: int, running_before: set[str], stopped_after: str
) -> None:
    shutil.copytree(_ROOT / ".ci", checkout / ".ci")
    (checkout / "status.txt").write_text(_status(running_before))
    fake_bin = checkout.parent / "bin"
    _script(fake_bin / "make", f".venv/bin/mlpatterns services up\nexit {make_exit}\n")
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLPATTERNS_SERVICES_DIR", None)
    res = subprocess.run([str(checkout / ".ci/run")], env=env, capture_output=True, text=True)
    assert res.returncode == make_exit, res.stdout + res.stderr
    assert _calls(checkout) == ["|services status", "|services up", f"|services down {stopped_after}"]
