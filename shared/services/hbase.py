"""Apache HBase 2.6 standalone plus its Thrift 1 server (what happybase speaks), from Maven Central.

Two JVMs: ``HMaster start`` (with ``hbase.cluster.distributed=false`` it runs ZooKeeper, the master
and one region server) and ``ThriftServer start``. Ready means happybase can list tables.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from shared import settings
from shared.services import Endpoint, Progress, Service, _jvm, _process
from shared.services._resources import resource_path, resource_text

__all__ = ["HBase"]

# What bin/hbase adds on JDK 17: HBase and its shaded netty reach into JDK internals.
_JDK17_FLAGS = [
    "-Dorg.apache.hbase.thirdparty.io.netty.tryReflectionSetAccessible=true",
    "--add-modules",
    "jdk.unsupported",
    *(
        f"--add-opens=java.base/{pkg}=ALL-UNNAMED"
        for pkg in (
            "java.io",
            "java.nio",
            "sun.nio.ch",
            "java.lang",
            "jdk.internal.ref",
            "java.lang.reflect",
            "java.util",
            "java.util.concurrent",
        )
    ),
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.dns=ALL-UNNAMED",
    "--add-exports=java.base/sun.net.util=ALL-UNNAMED",
]


class HBase(Service):
    """HBase on 127.0.0.1: Thrift on ``MLPATTERNS_HBASE_THRIFT_PORT``, ZooKeeper, master, region server."""

    name = "hbase"
    start_timeout = 150.0
    stop_timeout = 30.0

    def ports(self) -> dict[str, int]:
        return {
            name: settings.server_port(name)
            for name in ("HBASE_THRIFT", "HBASE_ZOOKEEPER", "HBASE_MASTER", "HBASE_REGIONSERVER")
        }

    def endpoint(self) -> Endpoint:
        ports = self.ports()
        return Endpoint(
            self.name,
            "127.0.0.1",
            self.port,
            f"thrift://127.0.0.1:{self.port}",
            self.logs / "thrift.log",
            {"zookeeper_port": str(ports["HBASE_ZOOKEEPER"])},
        )

    def pid_files(self) -> dict[str, Path]:
        return {"master": self.dir / "master.pid", "thrift": self.dir / "thrift.pid"}

    def install(self, progress: Progress) -> None:
        self._java = _jvm.java_binary(17)
        pom = self.dir / "hbase.pom.xml"
        pom.write_text(resource_text("hbase.pom.xml"))
        _jvm.fetch_jars(pom, self.dir / "libs", progress)

    def configure(self) -> None:
        data = self.dir / "data"
        (data / "tmp").mkdir(parents=True, exist_ok=True)
        ports = self.ports()
        site = Template(resource_text("hbase-site.xml")).substitute(
            data_dir=data,
            zk_port=ports["HBASE_ZOOKEEPER"],
            master_port=ports["HBASE_MASTER"],
            regionserver_port=ports["HBASE_REGIONSERVER"],
        )
        conf = self.dir / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "hbase-site.xml").write_text(site)

    def _java_cmd(self, heap: str, main: str, *args: str) -> list[str]:
        return [
            self._java,
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            *_JDK17_FLAGS,
            f"-Dlog4j2.configurationFile={resource_path('hbase-log4j2.properties')}",
            "-Dzookeeper.admin.enableServer=false",
            f"-Dhbase.log.dir={self.logs}",
            f"-Djava.io.tmpdir={self.dir / 'data' / 'tmp'}",
            "-cp",
            f"{self.dir / 'conf'}:{self.dir / 'libs'}/*",
            main,
            *args,
        ]

    def start(self, progress: Progress) -> None:
        pids = self.pid_files()
        master = self._java_cmd("1g", "org.apache.hadoop.hbase.master.HMaster", "start")
        _process.launch(master, self.logs / "master.log", pids["master"], cwd=self.dir)
        # Thrift starts at once and connects to ZooKeeper lazily; it answers once the master is up.
        thrift = self._java_cmd(
            "256m",
            "org.apache.hadoop.hbase.thrift.ThriftServer",
            "-b",
            "127.0.0.1",
            "-p",
            str(self.port),
            "start",
        )
        _process.launch(thrift, self.logs / "thrift.log", pids["thrift"], cwd=self.dir)

    def healthy(self) -> bool:
        import happybase
        from thriftpy2.transport import TTransportException

        try:
            conn = happybase.Connection("127.0.0.1", self.port, timeout=5000, autoconnect=False)
            conn.open()
        except (TTransportException, OSError):
            return False
        try:
            conn.tables()
            # Thrift lists tables before the master has finished initializing; until the
            # namespace table is online, creating a table waits and stopping the master hangs.
            regions = conn.client.getTableRegions(b"hbase:namespace")
            return bool(regions) and all(r.serverName for r in regions)
        except Exception:  # any Thrift/IO error means "not ready yet"
            return False
        finally:
            conn.close()
