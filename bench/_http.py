"""What the HTTP benchmarks share: servers in child processes, wrk, and real request bodies.

Not a benchmark itself (``make bench`` runs ``bench/[a-z]*.py``, so this file is skipped).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
#: Request times of the example bodies: a February afternoon, with the history before it loaded.
CUTOFF = "2013-02-14T12:00"
#: Redis key prefix of the benchmark's feature state (kept apart from the demo's and the tests').
PREFIX = "mlp-bench"

__all__ = ["CUTOFF", "PREFIX", "ROOT", "Server", "cpu_seconds", "ensure_wrk", "example", "free_port", "wrk"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk not found: installing the Debian package with apt-get (needs root)", flush=True)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(cmd, env=env, capture_output=True, check=True)
    return shutil.which("wrk") or "wrk"


def example(version: str | None) -> tuple[str, str, list[dict[str, Any]]]:
    """(redis url, model version, request bodies): Redis up, features loaded up to ``CUTOFF``.

    The bodies are the real flights scheduled in the hour before ``CUTOFF``. An empty registry
    gets a model trained on January first (about a minute).
    """
    from patterns.rest_api.loader import parse_until
    from patterns.rest_api.service import build_store
    from shared import services
    from shared.example.data import event_sources, load_flights
    from shared.example.flights import FLIGHT_FEATURES
    from shared.example.train import TrainingConfig, train
    from shared.features import StreamingExecutor
    from shared.registry import Registry

    redis_url = services.get("redis").up().url
    registry = Registry()
    if not registry.list():
        print("registry empty: training v1 on January (one minute)", flush=True)
        train(TrainingConfig(train_months=(1,), valid_months=(2,), max_iter=50), registry=registry)
    version = version or registry.latest().version
    until = parse_until(CUTOFF)
    store = build_store("redis", redis_url, PREFIX)
    StreamingExecutor(FLIGHT_FEATURES, store).observe_history(event_sources(), until)
    flights = load_flights((2,))
    near = flights[(flights["sched_ts"] >= until - 3600) & (flights["sched_ts"] < until)]
    fields = ("carrier", "flight", "origin", "dest", "distance", "sched_ts")
    bodies = [{k: v.item() if hasattr(v, "item") else v for k, v in zip(fields, row, strict=True)}
              for row in near[list(fields)].itertuples(index=False)]  # fmt: skip
    return redis_url, version, bodies


class Server:
    """A server in a child process (its own session), ready once ``ready_url`` answers 200."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], ready_url: str, log_dir: Path, wait: bool = True
    ) -> None:
        """Start the process; unless ``wait`` is False, also wait until it is ready (see ``wait_ready``)."""
        self.name = name
        self.ready_url = ready_url
        self.log = log_dir / f"{name.replace(' ', '_')}.log"
        with open(self.log, "wb") as fh:
            self.p = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
            )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until ``ready_url`` answers 200. Servers started with ``wait=False`` boot side by side."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.ready_url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.name} not ready:\n{self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_script(bodies: list[dict[str, Any]], path: Path) -> Path:
    """A wrk Lua script POSTing ``bodies`` in turn as JSON."""
    quoted = ",\n".join("  " + json.dumps(json.dumps(b)) for b in bodies)
    path.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"local bodies = {{\n{quoted}\n}}\nlocal i = 0\n"
        "request = function()\n  i = i % #bodies + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[i])\nend\n"
    )
    return path


def wrk(binary: str, url: str, script: Path, seconds: int, connections: int) -> tuple[float, float, int, int]:
    """(requests/s, p99 ms under load, failed requests, requests) from one wrk run."""
    cmd = [binary, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)] if m else float("nan")
    failed = sum(int(x) for x in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    failed += sum(int(x) for x in errors.groups()) if errors else 0
    return rps, p99, failed, total
