"""The real servers the patterns run against: Redis, Kafka (KRaft), HBase + Thrift and nginx.

Each server is a :class:`Service` subclass in its own module. The base class drives the life cycle
(``up`` is idempotent, ``down`` stops by pid, gracefully then forcibly, ``status`` queries the server
over its own protocol); subclasses fill in the hooks ``install``, ``configure``, ``start``,
``healthy`` and ``pid_files``. Everything a server writes lives under ``services_dir()/<name>``
(``.services/`` at the repository root unless ``MLPATTERNS_SERVICES_DIR`` says otherwise), and every
server binds to 127.0.0.1 only.

    >>> from shared import services
    >>> endpoint = services.get("kafka").up()      # starts it, or finds it already running
    >>> endpoint.address                             # '127.0.0.1:9092'
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from shared import settings
from shared.services import _process

__all__ = ["Endpoint", "Service", "ServiceError", "Status", "all_services", "get", "names"]

#: Start order; ``down`` goes in reverse. ``module:class`` so importing this package stays cheap.
_REGISTRY: dict[str, str] = {
    "redis": "shared.services.redis:Redis",
    "kafka": "shared.services.kafka:Kafka",
    "hbase": "shared.services.hbase:HBase",
    "nginx": "shared.services.nginx:Nginx",
}

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ServiceError(RuntimeError):
    """A server could not be installed, started or stopped; the message says what to do."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach one running server (what the pytest fixtures return)."""

    name: str
    host: str
    port: int
    #: Client-ready address: ``redis://127.0.0.1:6379/0``, ``127.0.0.1:9092`` (Kafka bootstrap),
    #: ``thrift://127.0.0.1:9090`` (HBase), ``http://127.0.0.1:8080`` (nginx).
    url: str
    log: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Status:
    name: str
    #: "running", "stopped", "unhealthy" (process alive, but the protocol does not answer or a
    #: process that is not ours answers on the configured port)
    state: str
    pids: dict[str, int]
    port: int
    detail: str = ""


class Service:
    """One local server. Subclasses set ``name`` and implement the hooks below."""

    name: ClassVar[str] = ""
    #: Seconds to wait for ``healthy()`` after ``start()``.
    start_timeout: ClassVar[float] = 30.0
    #: Seconds between the graceful signal and SIGKILL in ``stop()``.
    stop_timeout: ClassVar[float] = 30.0

    def __init__(self, base: Path | None = None) -> None:
        self.base = (base or settings.services_dir()).resolve()
        self.dir = self.base / self.name
        self.logs = self.dir / "logs"

    # ---- hooks -------------------------------------------------------------------------------

    def ports(self) -> dict[str, int]:
        """Every port the server listens on, main (client) port first."""
        raise NotImplementedError

    def endpoint(self) -> Endpoint:
        """Connection info for clients."""
        raise NotImplementedError

    def install(self, progress: Progress) -> None:
        """Fetch binaries or jars if missing (apt-get, Maven Central). Idempotent."""

    def configure(self) -> None:
        """Write config files under ``self.dir`` (called before every start; ports may change)."""

    def start(self, progress: Progress) -> None:
        """Launch the process(es) with :func:`_process.launch`; return without waiting for them."""
        raise NotImplementedError

    def healthy(self) -> bool:
        """One real request over the server's protocol; False (never an exception) if it fails."""
        raise NotImplementedError

    def pid_files(self) -> dict[str, Path]:
        """Pid file per process, in start order (stopped in reverse)."""
        return {self.name: self.dir / f"{self.name}.pid"}

    def stop(self, progress: Progress) -> None:
        """Stop every process by pid: SIGTERM, then SIGKILL after ``stop_timeout``."""
        for label, pid_file in reversed(list(self.pid_files().items())):
            pid = _process.live_pid(pid_file, str(self.dir))
            if pid is not None:
                progress(f"  stopping {label} (pid {pid})")
                if _process.stop_pid(pid, timeout=self.stop_timeout):
                    progress(f"  {label} did not stop within {self.stop_timeout:.0f}s: killed")
            pid_file.unlink(missing_ok=True)

    # ---- life cycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return next(iter(self.ports().values()))

    def log_files(self) -> list[Path]:
        return sorted(self.logs.glob("*.log")) if self.logs.exists() else []

    def log_tail(self, lines: int = 30) -> str:
        files = self.log_files() or [self.logs / f"{self.name}.log"]
        return "\n".join(f"--- {f}\n{_process.log_tail(f, lines)}" for f in files)

    def running(self) -> dict[str, int]:
        """Live pids of this server's processes (only ours: checked against the command line)."""
        pids = {}
        for label, pid_file in self.pid_files().items():
            pid = _process.live_pid(pid_file, str(self.dir))
            if pid is not None:
                pids[label] = pid
        return pids

    def status(self) -> Status:
        pids = self.running()
        if not pids:
            return Status(self.name, "stopped", pids, self.port)
        if len(pids) < len(self.pid_files()):
            missing = sorted(set(self.pid_files()) - set(pids))
            return Status(self.name, "unhealthy", pids, self.port, f"not running: {', '.join(missing)}")
        if not self.healthy():
            return Status(self.name, "unhealthy", pids, self.port, f"does not answer on port {self.port}")
        if clash := self.port_clash(pids):
            return Status(self.name, "unhealthy", pids, self.port, clash)
        return Status(self.name, "running", pids, self.port, self.endpoint().url)

    def up(self, progress: Progress = _stderr) -> Endpoint:
        """Start the server unless it already runs and answers; wait until it answers."""
        with _process.file_lock(self.base / f".{self.name}.lock"):
            pids = self.running()
            if pids and len(pids) == len(self.pid_files()) and self.healthy():
                if clash := self.port_clash(pids):
                    raise ServiceError(f"{self.name}: {clash}")
                progress(f"{self.name}: already running (pid {', '.join(map(str, pids.values()))})")
                return self.endpoint()
            if pids:
                # Half up (crashed helper, or still starting in another shell): start clean.
                progress(f"{self.name}: running but not answering; restarting")
                self.stop(progress)
            began = time.monotonic()
            self.dir.mkdir(parents=True, exist_ok=True)
            self.logs.mkdir(parents=True, exist_ok=True)
            try:
                self.install(progress)
            except ServiceError:
                raise
            except Exception as exc:
                raise ServiceError(f"{self.name}: install failed: {exc}") from exc
            self._check_ports()
            self.configure()
            progress(f"{self.name}: starting on 127.0.0.1:{self.port}")
            self.start(progress)
            ok = _process.wait_until(
                self.healthy,
                self.start_timeout,
                f"{self.name} on port {self.port}",
                alive=lambda: len(self.running()) == len(self.pid_files()),
                progress=progress,
            )
            if not ok:
                tail = self.log_tail()
                exited = len(self.running()) < len(self.pid_files())
                with contextlib.suppress(Exception):
                    self.stop(progress)
                why = "exited during start" if exited else f"did not answer within {self.start_timeout:.0f}s"
                raise ServiceError(f"{self.name} {why} (port {self.port}). Log tail:\n{tail}")
            progress(f"{self.name}: ready in {time.monotonic() - began:.1f}s at {self.endpoint().url}")
            return self.endpoint()

    def down(self, progress: Progress = _stderr) -> None:
        with _process.file_lock(self.base / f".{self.name}.lock"):
            if not self.running():
                progress(f"{self.name}: not running")
            else:
                self.stop(progress)
                progress(f"{self.name}: stopped")
            for pid_file in self.pid_files().values():
                pid_file.unlink(missing_ok=True)

    def port_clash(self, pids: dict[str, int]) -> str | None:
        """Why the server answering on our ports is not the one we started (None: it is ours).

        Our processes are alive, yet another process listens on a configured port: typically ours
        was started with other ``MLPATTERNS_*_PORT`` values and a stranger holds the new port, so
        a health check alone would take the stranger for ours.
        """
        ours = _process.family(pids.values())
        listening = _process.listening_ports(ours)
        if listening is None:
            return None  # cannot read our own sockets: no way to tell, trust the health check
        for label, port in self.ports().items():
            if port in listening:
                continue
            owner = _process.port_owner(port)
            if owner is None or owner in ours:
                continue
            where = ", ".join(map(str, sorted(listening))) or "no port"
            env = f"MLPATTERNS_{self._env_name(label)}_PORT"
            return (
                f"port {port} ({label}) is answered by {_process.describe(owner)}, not by our "
                f"{self.name} (pid {', '.join(map(str, pids.values()))}, listening on {where}). "
                f"Was ours started with another {env}? Stop ours with `mlpatterns services down "
                f"{self.name}` and start it again, or set {env} back."
            )
        return None

    def _check_ports(self) -> None:
        for label, port in self.ports().items():
            owner = _process.port_owner(port)
            if owner is None:
                continue
            who = _process.describe(owner)
            raise ServiceError(
                f"{self.name}: port {port} ({label}) is used by {who}. Stop it, or pick another port "
                f"with MLPATTERNS_{self._env_name(label)}_PORT."
            )

    def _env_name(self, label: str) -> str:
        return label.upper()


def names() -> list[str]:
    """Server names in start order."""
    return list(_REGISTRY)


def get(name: str, base: Path | None = None) -> Service:
    """The service called ``name`` (``redis``, ``kafka``, ``hbase``, ``nginx``)."""
    if name not in _REGISTRY:
        raise ServiceError(f"unknown service {name!r}; choose from {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name].split(":")
    service: Service = getattr(importlib.import_module(module), cls)(base)
    return service


def all_services(base: Path | None = None) -> list[Service]:
    """Every service, in start order."""
    return [get(name, base) for name in _REGISTRY]
