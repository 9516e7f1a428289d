"""Pid files, port owners, log tails and readiness polling for the servers in this package.

Every server runs in its own session (``start_new_session=True``) so that stopping it can signal the
whole process group: nginx workers, JVM helper processes and anything they forked go with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil

__all__ = [
    "apt_install",
    "describe",
    "family",
    "file_lock",
    "launch",
    "listening_ports",
    "live_pid",
    "log_tail",
    "port_free",
    "port_owner",
    "stop_pid",
    "wait_until",
]


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of ``path`` (or a note that it does not exist yet)."""
    if not path.exists():
        return f"(no log at {path})"
    with path.open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64 * 1024))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _matches(proc: psutil.Process, marker: str) -> bool:
    # Redis rewrites its process title, so the working directory (set by launch()) counts too.
    with contextlib.suppress(psutil.Error):
        if not _running(proc):
            return False
        if marker in " ".join(proc.cmdline()):
            return True
        return proc.cwd().startswith(marker)
    return False


def live_pid(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process is alive and is ours.

    ``marker`` must appear in its command line (a path under our services folder): a pid file left
    over from a crash may name a pid the kernel has since given to an unrelated process.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return None
    return pid if _matches(proc, marker) else None


def port_owner(port: int, host: str = "127.0.0.1") -> int | None:
    """Pid listening on ``port`` (any address that covers ``host``), 0 if unknown, None if free."""
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.Error:
        conns = []
    for conn in conns:
        listening = conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port
        if listening and conn.laddr.ip in (host, "0.0.0.0", "::", "::ffff:" + host):
            return conn.pid or 0
    # A socket we could not attribute (other namespace, no permission): try binding to be sure.
    return None if port_free(port, host) else 0


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``host:port`` now (a quick test; :func:`port_owner` says who)."""
    with socket.socket() as sock:
        # Like the servers themselves: connections in TIME_WAIT from a just-stopped server are fine.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def describe(pid: int) -> str:
    """``pid 123 (its command line)`` for messages; ``another process`` when the pid is unknown (0)."""
    if not pid:
        return "another process"
    try:
        command = " ".join(" ".join(psutil.Process(pid).cmdline()).split())
    except psutil.Error:
        return f"pid {pid}"
    return f"pid {pid} ({command[:120]})"


def family(pids: Iterable[int]) -> set[int]:
    """``pids`` and all their live descendants (nginx workers, JVM helpers)."""
    found: set[int] = set()
    for pid in pids:
        found.update(proc.pid for proc in _family(pid))
    return found


def listening_ports(pids: Iterable[int]) -> set[int] | None:
    """TCP ports any of ``pids`` listens on; None if their sockets cannot be read (no permission)."""
    ports: set[int] = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except psutil.AccessDenied:
            return None
        except psutil.Error:
            continue
        ports.update(c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr)
    return ports


def launch(
    cmd: Sequence[str],
    log: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``cmd`` in its own session, stdout+stderr appended to ``log``; write and return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def _family(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return []
    with contextlib.suppress(psutil.Error):
        return [root, *root.children(recursive=True)]
    return [root]


def stop_pid(pid: int, graceful: int = signal.SIGTERM, timeout: float = 30.0) -> bool:
    """Signal ``pid`` (and its descendants) with ``graceful``, wait, then SIGKILL what is left.

    Returns True if it had to kill. Also signals the process group when ``pid`` leads one, so
    daemons that re-parented their helpers to init are not left behind.
    """
    family = _family(pid)
    if not family:
        return False
    try:
        leads_group = os.getpgid(pid) == pid
    except ProcessLookupError:
        leads_group = False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, graceful)
    _, alive = psutil.wait_procs(family, timeout=timeout)
    alive = [p for p in alive if _running(p)]
    if leads_group:
        # Anything still in the group (even if its leader already exited) goes now.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=10)
    # Reap it if it was our child (started by launch() in this same Python process).
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    return bool(alive)


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    interval: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> bool:
    """Poll ``check`` until it is true (True), the deadline passes or ``alive`` turns false (False)."""
    start = time.monotonic()
    last_note = start
    while True:
        if check():
            return True
        now = time.monotonic()
        if alive is not None and not alive():
            return False
        if now - start > timeout:
            return False
        if progress is not None and now - last_note >= 5:
            progress(f"  waiting for {what}: {now - start:.0f}s (deadline {timeout:.0f}s)")
            last_note = now
        time.sleep(interval)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock so two ``up``/``down`` calls (CLI and pytest) never race on one server."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def apt_install(binary: str, package: str, progress: Callable[[str], None]) -> str:
    """Path of ``binary``, installing Debian's ``package`` first if it is missing."""
    found = shutil.which(binary) or next(
        (str(p) for p in (Path("/usr/sbin") / binary, Path("/usr/bin") / binary) if p.exists()), None
    )
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"{binary} not found and apt-get is not available: install {package} by hand")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    progress(f"  installing {package} (apt-get update + install)...")
    for cmd in (
        [*prefix, "apt-get", "update", "-q"],
        [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", package],
    ):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            tail = "\n".join((res.stdout + res.stderr).splitlines()[-15:])
            raise RuntimeError(
                f"{' '.join(cmd)} failed (exit {res.returncode}); is Debian's archive reachable?\n{tail}"
            )
    found = shutil.which(binary) or next(
        (str(p) for p in (Path("/usr/sbin") / binary, Path("/usr/bin") / binary) if p.exists()), None
    )
    if not found:
        raise RuntimeError(f"installed {package} but {binary} is still not on PATH")
    return found
