"""Session fixtures for the real servers, started by the project's own code (``shared.services``).

Each fixture makes sure its server is up (an idempotent ``up``: already running is fine) and returns
a :class:`shared.services.Endpoint` (``host``, ``port``, ``url``, ``address``, ``log``, ``extra``).
A server that cannot start fails the test with the server's log tail; nothing is ever skipped.

    def test_cache(redis_server):
        client = redis.Redis.from_url(redis_server.url)
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shared import services
from shared.example.train import TrainingConfig, train
from shared.registry import ModelVersion, Registry
from shared.services import Endpoint, ServiceError


def _up(name: str) -> Endpoint:
    try:
        return services.get(name).up()
    except ServiceError as exc:
        pytest.fail(f"could not start {name} for the tests:\n{exc}", pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Endpoint:
    """Redis: ``url`` is ``redis://127.0.0.1:<port>/0``."""
    return _up("redis")


@pytest.fixture(scope="session")
def kafka_server() -> Endpoint:
    """Kafka (KRaft): ``url``/``address`` is the bootstrap ``127.0.0.1:<port>``."""
    return _up("kafka")


@pytest.fixture(scope="session")
def hbase_server() -> Endpoint:
    """HBase Thrift 1: ``happybase.Connection(hbase_server.host, hbase_server.port)``."""
    return _up("hbase")


@pytest.fixture(scope="session")
def nginx_server() -> Endpoint:
    """nginx: ``url`` is ``http://127.0.0.1:<port>``; ``extra["conf_d"]`` is the include directory
    (see ``shared.services.nginx.conf_dir()`` and ``reload()``)."""
    return _up("nginx")


def register_copy(
    registry: Registry, src: ModelVersion, artifacts: Mapping[str, Path | bytes] | None = None, **changes: Any
) -> ModelVersion:
    """``src`` registered again in ``registry``: its artifacts (or ``artifacts``) and its manifest,
    with ``changes`` to the manifest (``feature_fingerprint=``, ``feature_names=``, ...)."""
    X, y = src.golden_set()
    manifest: dict[str, Any] = {
        "feature_set": src.feature_set,
        "feature_fingerprint": src.feature_fingerprint,
        "feature_names": src.feature_names,
        "training": src.training,
        "metrics": src.metrics,
        "data_fingerprint": src.data_fingerprint,
        "golden_inputs": X,
        "golden_outputs": y,
    }
    files = artifacts or {name: src.artifact(name) for name in src.artifacts if name != "golden.npz"}
    return registry.register(files, **(manifest | changes))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_kafka(
    kafka_server: Endpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[services.Service]:
    """A Kafka broker of this test alone, on free ports with its own data, for outages: ``down()``
    and ``up()`` stop and restart it, never the session's broker. ``endpoint().address`` is its
    bootstrap. It runs the session broker's jars (linked, not fetched again)."""
    monkeypatch.setenv("MLPATTERNS_KAFKA_PORT", str(free_port()))
    monkeypatch.setenv("MLPATTERNS_KAFKA_CONTROLLER_PORT", str(free_port()))
    broker = services.get("kafka", base=tmp_path / "services")
    broker.dir.mkdir(parents=True)
    (broker.dir / "libs").symlink_to(services.get("kafka").dir / "libs")
    quiet: Callable[[str], None] = lambda _: None  # noqa: E731
    try:
        broker.up(progress=quiet)
    except ServiceError as exc:
        pytest.fail(f"could not start a private Kafka for the test:\n{exc}", pytrace=False)
    yield broker
    broker.down(progress=quiet)


@dataclass
class PrivateRedis:
    """A redis-server of one test alone: ``stop``/``start`` (same port) and ``pause``/``resume``
    (SIGSTOP/SIGCONT: a server that accepts but never answers) are real outages. Port 0: it
    listens on the unix socket ``folder/redis.sock`` only."""

    url: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def on_unix_socket(cls, folder: Path) -> PrivateRedis:
        return cls(f"unix://{folder / 'redis.sock'}", 0, folder)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing (`make test` installs it with the other servers)"
        sock = self.folder / "redis.sock"
        args = ["--port", str(self.port), "--save", "", "--appendonly", "no"]
        args += ["--unixsocket", str(sock)] if self.port == 0 else ["--bind", "127.0.0.1"]
        self.process = subprocess.Popen([binary, *args, "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not self._answers(sock):
            assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def _answers(self, sock: Path) -> bool:
        if self.port == 0:
            return sock.exists()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
            return True
        return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of this test alone on a free port, started; stopped after the test."""
    port = free_port()
    server = PrivateRedis(f"redis://127.0.0.1:{port}/0", port, tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry holding v1 and v2, trained once per session on January (v2: other capacity).

    Tests copy it (the ``copy_registry`` fixture) into their own MLPATTERNS_HOME, so none can
    disturb another.
    """
    root = tmp_path_factory.mktemp("trained") / "registry"
    registry = Registry(root)
    train(TrainingConfig(train_months=(1,), valid_months=(2,), max_iter=50), registry=registry)
    train(
        TrainingConfig(train_months=(1,), valid_months=(2,), max_iter=30, learning_rate=0.2),
        registry=registry,
    )
    return root


@pytest.fixture(scope="session")
def copy_registry(trained_registry: Path) -> Callable[[Path], Registry]:
    """``copy_registry(home)``: a private copy of the session's v1 and v2 under ``home/registry``."""

    def copy(home: Path) -> Registry:
        shutil.copytree(trained_registry, home / "registry", dirs_exist_ok=True)
        return Registry(home / "registry")

    return copy


_SERVER_FIXTURES = {"redis_server", "kafka_server", "hbase_server", "nginx_server"}


@pytest.fixture(scope="session")
def load_script() -> Callable[[str], ModuleType]:
    """``load_script("lock")``: ``scripts/lock.py`` as a module (scripts/ is not a package)."""

    def load(name: str) -> ModuleType:
        path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{name}_script", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test needs the servers when any fixture it depends on (directly or not) starts one: marking
    # it here keeps `-m "not servers"` (``make test-fast``) honest without a marker in every file.
    for item in items:
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)
