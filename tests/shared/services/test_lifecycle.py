"""The life cycle the CLI relies on (idempotent up, real status, down leaves nothing, clear errors),
on private instances in a temporary services folder so the session's servers are not touched."""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shared import services
from shared.services import Endpoint, Service, ServiceError, _process, nginx
from tests.conftest import free_port


@pytest.fixture()
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A services folder and ports of its own; whatever was started there is stopped after."""
    base = tmp_path / "services"
    monkeypatch.setenv("MLPATTERNS_SERVICES_DIR", str(base))
    monkeypatch.setenv("MLPATTERNS_REDIS_PORT", str(free_port()))
    monkeypatch.setenv("MLPATTERNS_NGINX_PORT", str(free_port()))
    yield base
    for svc in services.all_services(base):
        if svc.name in ("redis", "nginx"):
            svc.down()


@pytest.mark.servers  # starts private servers of its own
@pytest.mark.parametrize("name", ["redis", "nginx"])
def test_up_is_idempotent_and_down_leaves_no_process(private: Path, name: str) -> None:
    svc = services.get(name)
    assert svc.dir.is_relative_to(private)
    assert svc.status().state == "stopped"

    first = svc.up()
    pids = svc.running()
    family = [psutil.Process(pid) for pid in pids.values()]
    family += [child for proc in family for child in proc.children(recursive=True)]
    assert svc.status().state == "running"
    assert svc.up() == first
    assert svc.running() == pids, "a second up must not start another process"

    svc.down()
    assert svc.status().state == "stopped"
    assert not svc.running()
    _gone, alive = psutil.wait_procs(family, timeout=5)
    assert not alive, f"left behind: {alive}"
    assert services.get(name).up().port == first.port
    svc.down()


@pytest.mark.servers
def test_busy_port_is_reported_with_its_owner(private: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        monkeypatch.setenv("MLPATTERNS_REDIS_PORT", str(port))
        with pytest.raises(
            ServiceError, match=rf"port {port} \(REDIS\) is used by pid {psutil.Process().pid}"
        ):
            services.get("redis").up()
    assert services.get("redis").status().state == "stopped"


def test_session_servers_report_running(
    redis_server: Endpoint, kafka_server: Endpoint, hbase_server: Endpoint, nginx_server: Endpoint
) -> None:
    for endpoint in (redis_server, kafka_server, hbase_server, nginx_server):
        status = services.get(endpoint.name).status()
        assert (status.state, status.port) == ("running", endpoint.port), status
        assert endpoint.log.exists()


def test_unknown_service_names_the_choices() -> None:
    with pytest.raises(ServiceError, match="redis, kafka, hbase, nginx"):
        services.get("kudu")


# ---- a process that is not ours on our port ------------------------------------------------------

_LISTENER = """
import socket, sys
sock = socket.socket()
sock.bind(("127.0.0.1", int(sys.argv[1])))
sock.listen()
while True:
    sock.accept()[0].close()
"""


class _Listener(Service):
    """A stand-in server (a Python process listening on a port): the base class's life cycle only."""

    name = "listener"
    start_timeout = 10.0
    stop_timeout = 5.0

    def ports(self) -> dict[str, int]:
        return {"TEST_LISTENER": int(os.environ["MLPATTERNS_TEST_LISTENER_PORT"])}

    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, "127.0.0.1", self.port, f"tcp://{self.port}", self.logs / "l.log")

    def start(self, progress: services.Progress) -> None:
        cmd = [sys.executable, "-c", _LISTENER, str(self.port)]
        _process.launch(cmd, self.logs / "l.log", self.pid_files()["listener"], cwd=self.dir)

    def healthy(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True


def test_a_stranger_answering_on_the_configured_port_is_not_taken_for_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPATTERNS_TEST_LISTENER_PORT", str(free_port()))
    svc = _Listener(tmp_path / "services")
    try:
        svc.up(progress=lambda _m: None)
        assert svc.status().state == "running"
        ours = svc.running()["listener"]
        with socket.socket() as stranger:
            stranger.bind(("127.0.0.1", 0))
            stranger.listen()
            port = stranger.getsockname()[1]
            # The setting changed after ours started; a stranger holds the new port.
            monkeypatch.setenv("MLPATTERNS_TEST_LISTENER_PORT", str(port))
            status = svc.status()
            assert status.state == "unhealthy", status
            clash = rf"port {port} \(TEST_LISTENER\) is answered by pid {os.getpid()} .*not by our listener"
            assert re.search(clash, status.detail), status.detail
            assert "MLPATTERNS_TEST_LISTENER_PORT" in status.detail
            with pytest.raises(ServiceError, match=clash):
                svc.up(progress=lambda _m: None)
            assert svc.running() == {"listener": ours}
    finally:
        svc.down(progress=lambda _m: None)
    assert not svc.running()


# ---- nginx conf.d files left from earlier runs -----------------------------------------------------


def test_listen_ports_reads_the_listen_directives() -> None:
    text = """
    # listen 1;  (a comment)
    server { listen 127.0.0.1:8000; server_name _; }
    server {listen 8001 default_server; listen [::1]:8002;}
    server { listen unix:/tmp/x.sock; listen *:8003; }
    """
    assert nginx.listen_ports(text) == [("127.0.0.1", 8000), ("*", 8001), ("::1", 8002), ("*", 8003)]


@pytest.fixture()
def squatter() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _site(listen: int) -> str:
    return f"server {{ listen 127.0.0.1:{listen}; location / {{ return 204; }} }}\n"


def test_a_stale_site_on_a_busy_port_is_set_aside_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, squatter: int
) -> None:
    monkeypatch.setenv("MLPATTERNS_NGINX_PORT", str(free_port()))
    server = nginx.Nginx(tmp_path / "services")
    server.conf_d.mkdir(parents=True)
    (server.conf_d / "rest_api_bench.conf").write_text(_site(squatter))
    (server.conf_d / "rest_api.conf").write_text(_site(free_port()))

    bind_error = f"nginx: [emerg] bind() to 127.0.0.1:{squatter} failed (98: Address already in use)"
    explained = server.explain_bind_errors(bind_error)
    assert f"port {squatter} is the listen of {server.conf_d / 'rest_api_bench.conf'}" in explained
    assert f"held by pid {os.getpid()}" in explained

    notes: list[str] = []
    moved = server.set_aside_busy_sites(notes.append)
    assert moved == [server.disabled_d / "rest_api_bench.conf"]
    assert sorted(p.name for p in server.conf_d.glob("*.conf")) == ["rest_api.conf"]
    assert "rest_api_bench.conf" in notes[0] and f"pid {os.getpid()}" in notes[0], notes


@pytest.mark.servers  # starts a private nginx of its own
def test_nginx_starts_despite_a_stale_site_on_a_busy_port(private: Path, squatter: int) -> None:
    server = nginx.Nginx()
    server.conf_d.mkdir(parents=True)
    (server.conf_d / "rest_api_bench.conf").write_text(_site(squatter))
    notes: list[str] = []
    server.up(progress=notes.append)
    assert server.status().state == "running"
    assert (server.disabled_d / "rest_api_bench.conf").exists()
    assert any("rest_api_bench.conf" in n for n in notes), notes
