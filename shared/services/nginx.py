"""nginx from Debian's package, as a reverse proxy the patterns configure through ``conf.d``.

The generated main config (``.services/nginx/nginx.conf``) has a status location on the main port
and ``include <conf.d>/*.conf;`` inside ``http {}``. A pattern writes its upstream/server blocks into
:func:`conf_dir` and calls :func:`reload`, which validates with ``nginx -t`` and then sends a
graceful reload: old workers finish their requests, new connections see the new config.

    >>> from shared.services import nginx
    >>> (nginx.conf_dir() / "rest_api.conf").write_text(block)
    >>> nginx.reload()                # raises ServiceError with nginx's message if the config is bad

Files in ``conf.d`` outlive an nginx process (the REST pattern's live front must come back after a
restart), so a file a crashed benchmark or test left behind is loaded at every start. When nginx
starts afresh, a file whose ``listen`` port another process holds (nginx could not start with it)
is moved to ``conf.d.disabled/`` with a warning; bind errors name the file that listens there.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from string import Template

import psutil

from shared import settings
from shared.services import Endpoint, Progress, Service, ServiceError, _process
from shared.services._resources import resource_text

__all__ = ["STATUS_PATH", "Nginx", "conf_dir", "listen_ports", "reload"]

#: The stub_status location on the main port.
STATUS_PATH = "/nginx_status"

_LISTEN = re.compile(r"(?:^|[\s;{}])listen\s+([^\s;]+)")
_BIND_FAILED = re.compile(r"bind\(\) to (\S+?):(\d+) failed")


def listen_ports(text: str) -> list[tuple[str, int]]:
    """(host, port) of every ``listen`` directive in an nginx config text; host ``*`` for all.

    ``listen 8000``, ``listen 127.0.0.1:8000``, ``listen [::1]:8000``, ``listen *:8000``; unix
    sockets are left out.
    """
    found = []
    for line in text.splitlines():
        code = line.split("#", 1)[0]
        for match in _LISTEN.finditer(code):
            address = match.group(1)
            if address.startswith("unix:"):
                continue
            host, _, port = address.rpartition(":")
            if port.isdigit():
                found.append((host.strip("[]") or "*", int(port)))
    return found


class Nginx(Service):
    """nginx on 127.0.0.1:``MLPATTERNS_NGINX_PORT``; prefix, pid and logs under ``.services/nginx``."""

    name = "nginx"
    start_timeout = 15.0
    stop_timeout = 15.0

    def ports(self) -> dict[str, int]:
        return {"NGINX": settings.server_port("NGINX")}

    def endpoint(self) -> Endpoint:
        return Endpoint(
            self.name,
            "127.0.0.1",
            self.port,
            f"http://127.0.0.1:{self.port}",
            self.logs / "error.log",
            {"status_url": self.status_url, "conf_d": str(self.conf_d)},
        )

    @property
    def conf_d(self) -> Path:
        """Directory whose ``*.conf`` files are included inside ``http {}``."""
        return self.dir / "conf.d"

    @property
    def conf_file(self) -> Path:
        return self.dir / "nginx.conf"

    @property
    def status_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{STATUS_PATH}"

    def pid_files(self) -> dict[str, Path]:
        return {"nginx": self.dir / "nginx.pid"}

    def _binary(self, progress: Progress) -> str:
        return _process.apt_install("nginx", "nginx", progress)

    def _cmd(self, *args: str) -> list[str]:
        return [
            self._binary(lambda _m: None),
            "-p",
            f"{self.dir}/",
            "-c",
            str(self.conf_file),
            "-e",
            str(self.logs / "error.log"),
            *args,
        ]

    def install(self, progress: Progress) -> None:
        self._binary(progress)

    def configure(self) -> None:
        for sub in ("tmp", "logs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf_d.mkdir(parents=True, exist_ok=True)
        conf = Template(resource_text("nginx.conf")).substitute(
            prefix=self.dir, logs=self.logs, conf_d=self.conf_d, port=self.port, status_path=STATUS_PATH
        )
        self.conf_file.write_text(conf)

    @property
    def disabled_d(self) -> Path:
        """Where a fresh start moves ``conf.d`` files that could not be served (busy port)."""
        return self.dir / "conf.d.disabled"

    def site_files(self, port: int) -> list[Path]:
        """The ``conf.d`` files that listen on ``port``."""
        files = sorted(self.conf_d.glob("*.conf")) if self.conf_d.is_dir() else []
        return [f for f in files if any(p == port for _h, p in listen_ports(_read(f)))]

    def set_aside_busy_sites(self, progress: Progress) -> list[Path]:
        """Before a fresh start: move ``conf.d`` files whose listen port another process holds.

        nginx cannot start with such a file (``bind() ... failed``), and it is typically left from
        an earlier run whose pattern is gone (a benchmark's front on a random port). The file is
        kept in :attr:`disabled_d`; a pattern that still wants it writes it again (its next reload
        then fails with nginx's message if the port is still taken).
        """
        moved = []
        for path in sorted(self.conf_d.glob("*.conf")) if self.conf_d.is_dir() else []:
            for host, port in listen_ports(_read(path)):
                # Only loopback / all addresses (what the project uses); nginx itself reports others.
                if port == self.port or host not in ("*", "0.0.0.0", "127.0.0.1", "localhost"):
                    continue
                if _process.port_free(port):
                    continue
                owner = _process.port_owner(port) or 0
                self.disabled_d.mkdir(parents=True, exist_ok=True)
                target = self.disabled_d / path.name
                os.replace(path, target)
                progress(
                    f"  nginx: {path.name} listens on {host}:{port}, which {_process.describe(owner)} "
                    f"holds: moved it to {target} (left from an earlier run?)"
                )
                moved.append(target)
                break
        return moved

    def explain_bind_errors(self, text: str) -> str:
        """``text`` plus, for each port nginx failed to bind, which file listens there and who holds it."""
        notes = []
        for port in dict.fromkeys(int(port) for _host, port in _BIND_FAILED.findall(text)):
            if port == self.port:
                what = "nginx's main port (MLPATTERNS_NGINX_PORT)"
            elif files := self.site_files(port):
                what = f"the listen of {', '.join(map(str, files))} (remove the file if it is stale)"
            else:
                what = "not listened on by any conf.d file"
            owner = _process.port_owner(port)
            held = f"; it is held by {_process.describe(owner)}" if owner is not None else ""
            notes.append(f"port {port} is {what}{held}")
        return "\n".join([text, *notes])

    def start(self, progress: Progress) -> None:
        self.set_aside_busy_sites(progress)
        self.test_config()
        # nginx daemonizes itself (new session, pid file from the config); its master is ours to stop.
        self._run(self._cmd(), "start")

    def stop(self, progress: Progress) -> None:
        pid = _process.live_pid(self.pid_files()["nginx"], str(self.dir))
        if pid is not None:
            progress(f"  stopping nginx master (pid {pid}) and its workers")
            # SIGQUIT is nginx's graceful shutdown: workers finish the requests they are serving.
            if _process.stop_pid(pid, graceful=3, timeout=self.stop_timeout):
                progress("  nginx did not stop gracefully in time: killed")
        self.pid_files()["nginx"].unlink(missing_ok=True)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.status_url, timeout=2) as resp:
                return resp.status == 200 and b"Active connections" in resp.read()
        except (urllib.error.URLError, OSError):
            return False

    def test_config(self) -> None:
        """``nginx -t`` on the generated config and everything in ``conf.d``; ServiceError if invalid."""
        self._run(self._cmd("-t", "-q"), "config test")

    @staticmethod
    def _accepting(pid: int) -> bool:
        try:
            title = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            return False
        return "worker process" in title and "shutting down" not in title

    def workers(self) -> list[int]:
        pid = _process.live_pid(self.pid_files()["nginx"], str(self.dir))
        if pid is None:
            return []
        try:
            children = psutil.Process(pid).children()
            return [c.pid for c in children if "worker process" in " ".join(c.cmdline())]
        except psutil.Error:
            return []

    def reload(self, timeout: float = 10.0) -> None:
        """Validate, then gracefully reload; returns once only workers with the new config accept.

        Raises ServiceError with nginx's own message if the new config is invalid (the running
        config keeps serving), or if nginx is not running.
        """
        if not self.running():
            raise ServiceError("nginx is not running: start it with `mlpatterns services up nginx`")
        self.test_config()
        before = set(self.workers())
        self._run(self._cmd("-s", "reload"), "reload")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Done when a new worker serves and every old one has stopped accepting: it is gone or
            # titled "worker process is shutting down" (it may still finish keep-alive requests).
            if set(self.workers()) - before and not any(self._accepting(pid) for pid in before):
                return
            time.sleep(0.05)
        tail = self.explain_bind_errors(self.log_tail())
        raise ServiceError(f"nginx reload sent but no new worker after {timeout:.0f}s:\n{tail}")

    def _run(self, cmd: list[str], what: str) -> None:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=self.dir)
        if res.returncode != 0:
            message = self.explain_bind_errors((res.stderr or res.stdout).strip())
            raise ServiceError(f"nginx {what} failed: {message}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def conf_dir(base: Path | None = None) -> Path:
    """The ``conf.d`` directory included by the main nginx config (created if missing)."""
    path = Nginx(base).conf_d
    path.mkdir(parents=True, exist_ok=True)
    return path


def reload(base: Path | None = None) -> None:
    """``nginx -t`` then a graceful ``nginx -s reload`` of the project's nginx; ServiceError if invalid."""
    Nginx(base).reload()
