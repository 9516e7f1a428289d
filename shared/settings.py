"""Where things live on disk and how to reach the servers, from environment variables.

Every value has a flag on the command that uses it; the environment variable is the default, so a
second checkout can run beside the first by exporting other ports and another home.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from shared.errors import UserError

__all__ = [
    "SettingError",
    "env_float",
    "env_int",
    "hbase_thrift",
    "home",
    "kafka_bootstrap",
    "nginx_port",
    "project_root",
    "redis_url",
    "server_port",
    "services_dir",
]


class SettingError(UserError, ValueError):
    """An environment variable holds a value its setting cannot use; the message names both."""


def env_int(name: str, default: int, lo: int | None = None, hi: int | None = None) -> int:
    """Integer setting ``name`` (unset or empty: ``default``), checked against ``[lo, hi]``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r}: expected an integer{_bounds(lo, hi)}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SettingError(f"{name}={raw!r}: expected an integer{_bounds(lo, hi)}")
    return value


def env_float(name: str, default: float, lo: float | None = None, hi: float | None = None) -> float:
    """Finite number setting ``name`` (unset or empty: ``default``), checked against ``[lo, hi]``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SettingError(f"{name}={raw!r}: expected a number{_bounds(lo, hi)}")
    return value


def _bounds(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    if lo is not None:
        return f" >= {lo}"
    return f" <= {hi}" if hi is not None else ""


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def home() -> Path:
    """MLPATTERNS_HOME: registry, prediction logs, deploy state (default ``<checkout>/.mlpatterns``).

    Made absolute (``~`` expanded): processes this one starts in another working directory, such
    as the REST colours, must find the same registry and logs.
    """
    raw = os.environ.get("MLPATTERNS_HOME", "").strip()
    path = Path(raw).expanduser().resolve() if raw else project_root() / ".mlpatterns"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SettingError(f"MLPATTERNS_HOME={raw!r}: cannot use it as a directory: {exc.strerror}") from None
    return path


def _port(name: str, default: int) -> int:
    return env_int(f"MLPATTERNS_{name}_PORT", default, 1, 65535)


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
    raw = os.environ.get("MLPATTERNS_SERVICES_DIR", "").strip()
    return Path(raw).expanduser().resolve() if raw else project_root() / ".services"


def redis_url() -> str:
    return os.environ.get("MLPATTERNS_REDIS_URL", f"redis://127.0.0.1:{_port('REDIS', 6379)}/0")


def kafka_bootstrap() -> str:
    return os.environ.get("MLPATTERNS_KAFKA_BOOTSTRAP", f"127.0.0.1:{_port('KAFKA', 9092)}")


def hbase_thrift() -> tuple[str, int]:
    return "127.0.0.1", _port("HBASE_THRIFT", 9090)


def nginx_port() -> int:
    return _port("NGINX", 8080)
