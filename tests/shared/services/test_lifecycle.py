"""The life cycle the CLI relies on (idempotent up, real status, down leaves nothing, clear errors),
on private instances in a temporary services folder so the session's servers are not touched."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shared import services
from shared.services import Endpoint, ServiceError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture()
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A services folder and ports of its own; whatever was started there is stopped after."""
    base = tmp_path / "services"
    monkeypatch.setenv("MLPATTERNS_SERVICES_DIR", str(base))
    monkeypatch.setenv("MLPATTERNS_REDIS_PORT", str(_free_port()))
    monkeypatch.setenv("MLPATTERNS_NGINX_PORT", str(_free_port()))
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
