"""Every benchmark of ``bench/`` runs to the end against the real servers, briefly, and draws its plot.

Speed is never asserted here (a test machine's timing says nothing): these runs prove that
``make bench`` still works, that each table prints every row with its same-run baseline, and that
``--plot`` writes a PNG. Each run gets a short duration and a private MLPATTERNS_HOME holding the
session's small models.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.registry import Registry
from shared.services import Endpoint

ROOT = Path(__file__).resolve().parents[2]
_NUMBER = r"[\d,]+(?:\.\d+)?"

#: script -> (short arguments, lines the table must print, each with at least one number).
# fmt: off
BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    "features.py": (
        ["--requests", "50", "--rounds", "1"],
        ["read raw tables (baseline)", "OfflineExecutor.compute", "Redis PING (baseline)",
         "online lookup, embedded store", "online lookup, Redis store"],
    ),
    "rest.py": (
        ["--duration", "1", "--rounds", "1", "--sequential", "20"],
        ["rest app (nginx)", "rest app (direct)", "bentoml", "bare fastapi+sklearn", "no-op (nginx)",
         "no-op (direct)", "goals, rest app through nginx"],
    ),
    "rest_stages.py": (
        ["--duration", "1", "--rounds", "1"],
        ["no-op", "no store", "round trip", "idle store", "free features", "features", "predict", "embedded",
         "0.5x the no-op needs"],
    ),
    "batch.py": (
        ["--rounds", "1", "--to", "2013-01-31"],  # one month: the full year is `make bench`
        ["features (offline executor)", "inference (onnxruntime)", "end to end (score)",
         "baseline: raw happybase put", "end-to-end throughput", "write throughput / raw"],
    ),
    "stream.py": (
        ["--days", "1", "--seconds", "2", "--rate", "200"],
        ["raw consume->produce loop", "streaming worker", "of which publish->produce"],
    ),
}
# fmt: on


@pytest.fixture
def servers(
    redis_server: Endpoint, kafka_server: Endpoint, hbase_server: Endpoint, nginx_server: Endpoint
) -> None:
    """All four servers up (each benchmark also starts what it needs, idempotently)."""


@pytest.mark.servers
@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(BENCHMARKS))
def test_benchmark_runs_prints_its_table_and_draws_its_plot(
    script: str, servers: None, copy_registry: Callable[[Path], Registry], tmp_path: Path
) -> None:
    args, rows = BENCHMARKS[script]
    home = tmp_path / "home"
    copy_registry(home)
    plot = tmp_path / "plot.png"
    env = os.environ | {"MLPATTERNS_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args, "--plot", str(plot)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    for row in rows:
        line = next((ln for ln in result.stdout.splitlines() if ln.strip().startswith(row)), None)
        assert line is not None, f"{script}: no line '{row}' in\n{result.stdout[-3000:]}"
        assert re.search(_NUMBER, line.replace(row, "")), f"{script}: line without a number: {line}"
    assert not re.search(r"\bnan\b", result.stdout.lower()), f"{script} printed NaN:\n{result.stdout[-3000:]}"
    png = plot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000, f"{script}: no plot drawn"
