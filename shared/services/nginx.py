"""nginx from Debian's package, as a reverse proxy the patterns configure through ``conf.d``.

The generated main config (``.services/nginx/nginx.conf``) has a status location on the main port
and ``include <conf.d>/*.conf;`` inside ``http {}``. A pattern writes its upstream/server blocks into
:func:`conf_dir` and calls :func:`reload`, which validates with ``nginx -t`` and then sends a
graceful reload: old workers finish their requests, new connections see the new config.

    >>> from shared.services import nginx
    >>> (nginx.conf_dir() / "rest_api.conf").write_text(block)
    >>> nginx.reload()                # raises ServiceError with nginx's message if the config is bad
"""

from __future__ import annotations

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

__all__ = ["STATUS_PATH", "Nginx", "conf_dir", "reload"]

#: The stub_status location on the main port.
STATUS_PATH = "/nginx_status"


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

    def start(self, progress: Progress) -> None:
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
        raise ServiceError(f"nginx reload sent but no new worker after {timeout:.0f}s:\n{self.log_tail()}")

    def _run(self, cmd: list[str], what: str) -> None:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=self.dir)
        if res.returncode != 0:
            raise ServiceError(f"nginx {what} failed: {(res.stderr or res.stdout).strip()}")


def conf_dir(base: Path | None = None) -> Path:
    """The ``conf.d`` directory included by the main nginx config (created if missing)."""
    path = Nginx(base).conf_d
    path.mkdir(parents=True, exist_ok=True)
    return path


def reload(base: Path | None = None) -> None:
    """``nginx -t`` then a graceful ``nginx -s reload`` of the project's nginx; ServiceError if invalid."""
    Nginx(base).reload()
