"""REST fixtures: small trained models in a temporary home, a loaded Redis feature store, app processes.

Reusable by every REST test (app, V2, blue-green switch, BentoML):

* ``rest_home`` -> Path: MLPATTERNS_HOME of the session (registry + prediction logs);
* ``rest_model`` / ``rest_model_v2`` -> ModelVersion ``v1`` / ``v2`` (January, small; v2 on demand);
* ``rest_store`` -> RestStore(url, prefix): Redis feature state loaded up to ``CUTOFF``, under a
  prefix no other session uses;
* ``rest_requests`` -> list of /predict payloads: real flights scheduled in the hour before
  ``CUTOFF`` (their features are exact), ``request_id`` = the flight id;
* ``new_rest_store()`` -> RestStore: an empty prefix of its own (cleared after the test);
* ``rest_payload(row)`` -> the /predict body of one ``load_flights()`` row;
* ``rest_free_port()`` -> a free TCP port on 127.0.0.1;
* ``start_rest_app(...)`` -> RestApp: a uvicorn subprocess of ``mlpatterns rest serve`` on a free port
  (stopped at the end of the session, or by ``app.stop()``);
* ``rest_app`` -> RestApp: v1, slot blue, reading ``rest_store``, admin token ``ADMIN_TOKEN``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from patterns.rest_api.loader import parse_until
from patterns.rest_api.service import build_store
from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import StreamingExecutor
from shared.registry import ModelVersion, Registry

#: Models are trained on January only; the store is loaded up to noon of this February day.
DAY = "2013-02-14"
CUTOFF = "2013-02-14T12:00"
ADMIN_TOKEN = "test-admin-token"
_START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class RestStore:
    """Where the feature state of a test lives in Redis."""

    url: str
    prefix: str


@dataclass
class RestApp:
    """One ``mlpatterns rest serve`` process."""

    url: str
    port: int
    version: str
    slot: str
    admin_token: str | None
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def stop(self) -> int | None:
        """SIGTERM (graceful: the prediction log is flushed), then SIGKILL after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def rest_free_port() -> Callable[[], int]:
    return free_port


@pytest.fixture(scope="session")
def rest_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rest_home")


@pytest.fixture(scope="session")
def rest_registry(rest_home: Path, copy_registry: Callable[[Path], Registry]) -> Registry:
    return copy_registry(rest_home)


@pytest.fixture(scope="session")
def rest_model(rest_registry: Registry) -> ModelVersion:
    """v1: one month, 50 iterations."""
    return rest_registry.get("v1")


@pytest.fixture(scope="session")
def rest_model_v2(rest_model: ModelVersion, rest_registry: Registry) -> ModelVersion:
    """v2: same month, other capacity."""
    return rest_registry.get("v2")


def new_store(redis_url: str) -> RestStore:
    return RestStore(redis_url, f"rest-test-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def new_rest_store(redis_server: Any) -> Iterator[Callable[[], RestStore]]:
    """Factory of empty feature-state prefixes in the session's Redis (deleted after the test)."""
    made: list[RestStore] = []

    def make() -> RestStore:
        made.append(new_store(redis_server.url))
        return made[-1]

    yield make
    for info in made:
        build_store("redis", info.url, info.prefix).clear()


@pytest.fixture(scope="session")
def rest_payload() -> Callable[[Any], dict[str, Any]]:
    """``rest_payload(row)``: the /predict body of one ``load_flights()`` row."""
    return payload


@pytest.fixture(scope="session")
def rest_store(redis_server: Any) -> Iterator[RestStore]:
    """Feature state replayed from history up to ``CUTOFF`` under a fresh prefix."""
    store_info = new_store(redis_server.url)
    store = build_store("redis", store_info.url, store_info.prefix)
    StreamingExecutor(FLIGHT_FEATURES, store).observe_history(event_sources(), parse_until(CUTOFF))
    yield store_info
    store.clear()


def payload(row: Any) -> dict[str, Any]:
    """The /predict body of one row of ``load_flights()`` (explicit fields, no derived ones)."""
    return {
        "request_id": str(row["flight_id"]),
        "carrier": str(row["carrier"]),
        "flight": int(row["flight"]),
        "origin": str(row["origin"]),
        "dest": str(row["dest"]),
        "distance": float(row["distance"]),
        "sched_ts": int(row["sched_ts"]),
    }


@pytest.fixture(scope="session")
def rest_requests() -> list[dict[str, Any]]:
    until = parse_until(CUTOFF)
    flights = load_flights((2,))
    near = flights[(flights["sched_ts"] >= until - 3600) & (flights["sched_ts"] < until)]
    return [payload(row) for _, row in near.iterrows()]


def wait_live(app: RestApp, timeout_s: float = _START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            pytest.fail(f"rest app exited with {app.process.returncode}:\n{app.log_tail()}", pytrace=False)
        try:
            if httpx.get(app.url + "/v2/health/live", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    app.stop()
    pytest.fail(f"rest app not live after {timeout_s:.0f} s:\n{app.log_tail()}", pytrace=False)


@pytest.fixture(scope="session")
def start_rest_app(rest_home: Path, rest_model: ModelVersion) -> Iterator[Callable[..., RestApp]]:
    """Factory: ``start_rest_app(store=RestStore|None, version="v1", slot="blue", ...) -> RestApp``.

    ``store=None`` serves the embedded (empty) store; ``redis_url`` overrides the store's URL (e.g. a
    closed port); ``extra_args`` go to ``mlpatterns rest serve``.
    """
    started: list[RestApp] = []

    def start(
        store: RestStore | None = None,
        *,
        version: str = "v1",
        slot: str = "blue",
        admin_token: str | None = ADMIN_TOKEN,
        redis_url: str | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> RestApp:
        port = free_port()
        args = [sys.executable, "-m", "patterns.rest_api", "serve", "--version", version, "--port", str(port)]
        args += ["--slot", slot]
        if store is None:
            args += ["--store", "embedded"]
        else:
            args += [
                "--store",
                "redis",
                "--redis-url",
                redis_url or store.url,
                "--redis-prefix",
                store.prefix,
            ]
        if admin_token is not None:
            args += ["--admin-token", admin_token]
        args += list(extra_args)
        log_path = rest_home / "apps" / f"{slot}-{port}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        child_env = os.environ | {"MLPATTERNS_HOME": str(rest_home)} | (env or {})
        child_env.pop("MLPATTERNS_ADMIN_TOKEN", None)
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=child_env, start_new_session=True
            )
        app = RestApp(f"http://127.0.0.1:{port}", port, version, slot, admin_token, log_path, process)
        started.append(app)
        wait_live(app)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture(scope="session")
def rest_app(start_rest_app: Callable[..., RestApp], rest_store: RestStore) -> RestApp:
    return start_rest_app(rest_store)
