"""Where things live on disk and how to reach the servers, from environment variables.

Every value has a flag on the command that uses it; the environment variable is the default, so a
second checkout can run beside the first by exporting other ports and another home.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "hbase_thrift",
    "home",
    "kafka_bootstrap",
    "nginx_port",
    "project_root",
    "redis_url",
    "server_port",
    "services_dir",
]


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def home() -> Path:
    """MLPATTERNS_HOME: registry, prediction logs, deploy state (default ``<checkout>/.mlpatterns``)."""
    path = Path(os.environ.get("MLPATTERNS_HOME", project_root() / ".mlpatterns"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _port(name: str, default: int) -> int:
    return int(os.environ.get(f"MLPATTERNS_{name}_PORT", default))


#: Default port of every server the project starts (``mlpatterns services``); each one is
#: overridden by ``MLPATTERNS_<NAME>_PORT``.
_SERVER_PORTS: dict[str, int] = {
    "REDIS": 6379,
    "KAFKA": 9092,
    "KAFKA_CONTROLLER": 9093,
    "HBASE_THRIFT": 9090,
    "HBASE_ZOOKEEPER": 2181,
    "HBASE_MASTER": 16000,
    "HBASE_REGIONSERVER": 16020,
    "NGINX": 8080,
}


def server_port(name: str) -> int:
    """Port of one local server by its settings name (``KAFKA``, ``HBASE_THRIFT``, ...), env first."""
    return _port(name, _SERVER_PORTS[name])


def services_dir() -> Path:
    """MLPATTERNS_SERVICES_DIR: data, logs and pid files of the local servers (default ``.services``)."""
    return Path(os.environ.get("MLPATTERNS_SERVICES_DIR", project_root() / ".services")).resolve()


def redis_url() -> str:
    return os.environ.get("MLPATTERNS_REDIS_URL", f"redis://127.0.0.1:{_port('REDIS', 6379)}/0")


def kafka_bootstrap() -> str:
    return os.environ.get("MLPATTERNS_KAFKA_BOOTSTRAP", f"127.0.0.1:{_port('KAFKA', 9092)}")


def hbase_thrift() -> tuple[str, int]:
    return "127.0.0.1", _port("HBASE_THRIFT", 9090)


def nginx_port() -> int:
    return _port("NGINX", 8080)
