"""Apache Kafka 4.x in KRaft mode (one combined broker + controller), from jars on Maven Central."""

from __future__ import annotations

import base64
import socket
import subprocess
import uuid
from pathlib import Path
from string import Template

from shared import settings
from shared.services import Endpoint, Progress, Service, ServiceError, _jvm, _process
from shared.services._resources import resource_path, resource_text

__all__ = ["Kafka"]

_HEAP = ["-Xms512m", "-Xmx1g"]
_GC = ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35"]


def _cluster_id() -> str:
    # Kafka's Uuid.randomUuid(): URL-safe base64 of 16 random bytes, never starting with "-"
    # (it would read as a command-line flag). Made here to save a JVM start for `random-uuid`.
    while True:
        value = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not value.startswith("-"):
            return value


class Kafka(Service):
    """Kafka on 127.0.0.1: clients on ``MLPATTERNS_KAFKA_PORT``, controller on ``..._CONTROLLER_PORT``."""

    name = "kafka"
    start_timeout = 60.0
    stop_timeout = 30.0

    def ports(self) -> dict[str, int]:
        return {
            "KAFKA": settings.server_port("KAFKA"),
            "KAFKA_CONTROLLER": settings.server_port("KAFKA_CONTROLLER"),
        }

    def endpoint(self) -> Endpoint:
        address = f"127.0.0.1:{self.port}"
        return Endpoint(
            self.name,
            "127.0.0.1",
            self.port,
            address,
            self.logs / "kafka.log",
            {"controller_port": str(self.ports()["KAFKA_CONTROLLER"])},
        )

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    def install(self, progress: Progress) -> None:
        self._java = _jvm.java_binary(17)
        pom = self.dir / "kafka.pom.xml"
        pom.write_text(resource_text("kafka.pom.xml"))
        _jvm.fetch_jars(pom, self.dir / "libs", progress)

    def configure(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = self.ports()
        conf = Template(resource_text("kafka-server.properties")).substitute(
            port=ports["KAFKA"], controller_port=ports["KAFKA_CONTROLLER"], data_dir=self.data_dir
        )
        (self.dir / "server.properties").write_text(conf)

    def _java_cmd(self, heap: list[str], main: str, *args: str) -> list[str]:
        return [
            self._java,
            *heap,
            *_GC,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={resource_path('kafka-log4j2.properties')}",
            f"-Dkafka.logs.dir={self.logs}",
            "-cp",
            f"{self.dir / 'libs'}/*",
            main,
            *args,
        ]

    def start(self, progress: Progress) -> None:
        if not (self.data_dir / "meta.properties").exists():
            progress("  formatting KRaft storage (first start)")
            cmd = self._java_cmd(
                ["-Xmx512m"],
                "kafka.tools.StorageTool",
                "format",
                "-t",
                _cluster_id(),
                "-c",
                str(self.dir / "server.properties"),
                "--ignore-formatted",
            )
            res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=self.dir)
            if res.returncode != 0:
                tail = "\n".join((res.stdout + res.stderr).splitlines()[-20:])
                raise ServiceError(f"kafka storage format failed (exit {res.returncode}):\n{tail}")
        cmd = self._java_cmd(_HEAP, "kafka.Kafka", str(self.dir / "server.properties"))
        _process.launch(cmd, self.logs / "kafka.log", self.pid_files()["kafka"], cwd=self.dir)

    def healthy(self) -> bool:
        # A metadata request that must list this broker: the socket alone answers too early.
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        # Kafka opens its client port last; a client built before that retries for many seconds.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=f"127.0.0.1:{self.port}",
                request_timeout_ms=3000,
                client_id="mlpatterns-status",
            )
        except (KafkaError, OSError, ValueError):
            return False
        try:
            # A Metadata request (what every client sends first), then the registered brokers.
            admin.list_topics()
            cluster = admin.describe_cluster()
            return any(not b.get("is_fenced") for b in cluster.get("brokers", []))
        except (KafkaError, OSError, ValueError):
            return False
        finally:
            admin.close()
