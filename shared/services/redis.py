"""Redis from Debian's ``redis-server`` package, run with our own config (no systemd)."""

from __future__ import annotations

from pathlib import Path
from string import Template

import redis as redis_client

from shared import settings
from shared.services import Endpoint, Progress, Service, _process
from shared.services._resources import resource_text

__all__ = ["Redis"]


class Redis(Service):
    """One Redis on 127.0.0.1, data in ``.services/redis/data``."""

    name = "redis"
    start_timeout = 15.0
    stop_timeout = 15.0

    def ports(self) -> dict[str, int]:
        return {"REDIS": settings.server_port("REDIS")}

    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, "127.0.0.1", self.port, f"redis://127.0.0.1:{self.port}/0", self.log)

    @property
    def log(self) -> Path:
        return self.logs / "redis.log"

    def install(self, progress: Progress) -> None:
        self._binary = _process.apt_install("redis-server", "redis-server", progress)

    def configure(self) -> None:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        conf = Template(resource_text("redis.conf")).substitute(
            port=self.port, data_dir=data, log_file=self.log
        )
        (self.dir / "redis.conf").write_text(conf)

    def start(self, progress: Progress) -> None:
        binary = getattr(self, "_binary", None) or _process.apt_install(
            "redis-server", "redis-server", progress
        )
        _process.launch(
            [binary, str(self.dir / "redis.conf")],
            self.logs / "redis.out.log",
            self.pid_files()["redis"],
            cwd=self.dir,
        )

    def healthy(self) -> bool:
        try:
            client = redis_client.Redis(
                host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2
            )
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis_client.RedisError:
            return False
