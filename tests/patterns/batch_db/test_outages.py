"""HBase Thrift going away under the batch store: a clear error, a quick one, and recovery.

Real network failures against the real HBase, never touching the shared server: a port where nothing
listens (Thrift down), a socket that accepts but never answers (a paused server) and ``_Proxy``, a
TCP forwarder to the real Thrift port that can go down and come back on the same port (a restart).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from click.testing import CliRunner, Result

from patterns.batch_db.cli import batch
from patterns.batch_db.hbase_store import HBaseStore
from patterns.batch_db.reader import PredictionReader
from patterns.batch_db.store import StoreUnavailable, prediction_table, read_timeout_ms
from shared.services import Endpoint
from tests.conftest import free_port

from .conftest import DAY

pytestmark = pytest.mark.servers

FLIGHT = "20130301-UA475-EWR-0515"


class _Proxy:
    """``127.0.0.1:<port>`` forwarded to ``target``; ``down()`` closes the listener and every
    connection (as a Thrift restart does), ``up()`` listens again on the same port. With ``cut_on``
    it goes down by itself, before forwarding, when a client sends data holding all of those bytes
    (a Thrift call names its method and its table)."""

    def __init__(self, target: tuple[str, int], cut_on: tuple[bytes, ...] = ()) -> None:
        self.target, self.cut_on, self.port = target, cut_on, free_port()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: same port again
        listener.settimeout(0.05)  # accept() wakes up to notice down()
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            socks, self._socks = self._socks, []
        for s in [*socks, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes the pumps blocked in recv()
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._socks += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, self.cut_on), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, ()), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, cut_on: tuple[bytes, ...]) -> None:
        try:
            while data := src.recv(65536):
                if cut_on and all(b in data for b in cut_on):
                    self.down()
                    return
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):  # one side closed: end this pair only (the peer sees EOF)
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(hbase_server: Endpoint) -> Iterator[_Proxy]:
    p = _Proxy((hbase_server.host, hbase_server.port))
    yield p
    p.down()


@pytest.fixture
def prefix(hbase_server: Endpoint, _hbase_drops: Callable[[str, int, list[str]], None]) -> Iterator[str]:
    """A fresh table prefix on the real HBase; its tables are dropped afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    store = HBaseStore(hbase_server.host, hbase_server.port, prefix=name, writers=1)
    tables = [*store.tables(), f"{name}_batch_meta"]
    store.close()
    _hbase_drops(hbase_server.host, hbase_server.port, tables)


def _published(hbase_server: Endpoint, prefix: str) -> float:
    """Publish one table holding ``FLIGHT`` (written directly, not through a proxy); its score."""
    store = HBaseStore(hbase_server.host, hbase_server.port, prefix=prefix, writers=1)
    table = prediction_table(prefix, [DAY], "v1", "0123456789")
    store.create_table(table)
    meta = {"version": "v1", "fingerprint": "f", "run_id": "0123456789"}
    store.put_predictions(table, [FLIGHT], np.array([0.25]), meta)
    store.publish(table, [DAY])
    store.close()
    return 0.25


def _one_error_line(out: Result, *texts: str) -> None:
    assert out.exit_code == 1, out.output
    # A progress bar may come first (redrawn with \r): the error is the last thing printed, once.
    lines = [line.strip() for line in out.output.replace("\r", "\n").split("\n") if line.strip()]
    assert [line.startswith("Error: ") for line in lines].count(True) == 1, out.output
    assert lines[-1].startswith("Error: "), out.output
    assert "Traceback" not in out.output and isinstance(out.exception, SystemExit)
    for text in texts:
        assert text in out.output, out.output


def test_reader_survives_a_thrift_restart(hbase_server: Endpoint, prefix: str, proxy: _Proxy) -> None:
    score = _published(hbase_server, prefix)
    reader = PredictionReader(
        HBaseStore("127.0.0.1", proxy.port, prefix=prefix, timeout_ms=read_timeout_ms(2))
    )
    assert reader.get(FLIGHT).score == score  # type: ignore[union-attr]
    proxy.down()  # restarted between two lookups: the open connection is dead, the server is back
    proxy.up()
    assert reader.get(FLIGHT).score == score  # type: ignore[union-attr]
    proxy.down()  # down during a lookup: one clear error naming the server
    with pytest.raises(StoreUnavailable, match=f"HBase Thrift at 127.0.0.1:{proxy.port} is unavailable"):
        reader.get(FLIGHT)
    with pytest.raises(StoreUnavailable):
        reader.store.pointers()
    proxy.up()
    assert reader.get(FLIGHT).score == score  # type: ignore[union-attr]
    assert reader.store.scores(reader.table_for(DAY)).tolist() == [score]
    reader.store.close()


def test_reader_times_out_quickly_on_a_paused_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that accepts and never answers (a paused HBase) fails a reader within its short
    timeout (the env var sets it), not after the writers' two minutes."""
    with socket.create_server(("127.0.0.1", 0)) as paused:  # listens; nothing ever accepts
        monkeypatch.setenv("MLPATTERNS_BATCH_STORE", "hbase")
        monkeypatch.setenv("MLPATTERNS_HBASE_THRIFT_PORT", str(paused.getsockname()[1]))
        monkeypatch.setenv("MLPATTERNS_HBASE_READ_TIMEOUT", "0.3")
        errors: list[BaseException] = []

        def open_reader() -> None:
            try:
                PredictionReader()
            except BaseException as exc:  # reported by the assertions below
                errors.append(exc)

        began = time.perf_counter()
        worker = threading.Thread(target=open_reader, daemon=True)
        worker.start()
        worker.join(timeout=10)  # before the fix it waits 120 s per call
        assert not worker.is_alive(), "the reader did not time out"
    assert time.perf_counter() - began < 5
    assert len(errors) == 1 and isinstance(errors[0], StoreUnavailable), errors
    assert "TimeoutError" in str(errors[0]) or "timed out" in str(errors[0])


@pytest.mark.parametrize(
    "args",
    [
        ["get", FLIGHT],
        ["get", "--date", DAY],
        ["pointers"],
        ["runs"],
        ["publish", "0123456789"],
        ["rollback", "--date", DAY],
        ["score", "--date", DAY],
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_cli_with_thrift_down_is_one_error_line(args: list[str]) -> None:
    port = free_port()  # nothing listens there
    out = CliRunner().invoke(
        batch,
        [*args, "--store", "hbase", "--prefix", "tdown"],
        env={"MLPATTERNS_HBASE_THRIFT_PORT": str(port)},
    )
    _one_error_line(out, f"HBase Thrift at 127.0.0.1:{port} is unavailable")


@pytest.mark.parametrize("writers", ["1", "2"])
def test_score_when_thrift_dies_mid_run(hbase_server: Endpoint, prefix: str, writers: str) -> None:
    """Thrift dies at the first write of prediction rows (a ``mutateRows`` of ``s:p`` cells): one
    error line that says the run is left as 'writing' and how to complete it; the record says so."""
    cut = _Proxy((hbase_server.host, hbase_server.port), cut_on=(b"mutateRows", b"s:p"))
    try:
        out = CliRunner().invoke(
            batch,
            ["score", "--date", DAY, "--store", "hbase", "--prefix", prefix],
            env={"MLPATTERNS_HBASE_THRIFT_PORT": str(cut.port), "MLPATTERNS_HBASE_WRITERS": writers},
        )
    finally:
        cut.down()
    _one_error_line(out, f"127.0.0.1:{cut.port}", "left as 'writing'", "rerunning `batch score` completes it")
    store = HBaseStore(hbase_server.host, hbase_server.port, prefix=prefix, writers=1)
    assert [r.status for r in store.runs()] == ["writing"]
    store.close()
    if writers == "1":  # the advertised recovery, once: the same command on a live server completes it
        again = CliRunner().invoke(
            batch,
            ["score", "--date", DAY, "--store", "hbase", "--prefix", prefix],
            env={"MLPATTERNS_HBASE_THRIFT_PORT": str(hbase_server.port), "MLPATTERNS_HBASE_WRITERS": "1"},
        )
        assert again.exit_code == 0 and "published" in again.output, again.output


def test_writer_processes_report_a_dead_server_cleanly(
    hbase_server: Endpoint, prefix: str, proxy: _Proxy, capfd: pytest.CaptureFixture[str]
) -> None:
    """Writer processes that cannot connect fail the write with ``StoreUnavailable``, and print no
    worker traceback on the scorer's terminal."""
    store = HBaseStore("127.0.0.1", proxy.port, prefix=prefix, writers=2)
    table = prediction_table(prefix, [DAY], "v1", "0123456789")
    store.create_table(table)
    proxy.down()  # before the writer processes start: each fails to connect
    meta = {"version": "v1", "fingerprint": "f", "run_id": "0123456789"}
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{proxy.port}.*writes to the run's table stopped"):
        store.put_predictions(table, [FLIGHT, "20130301-AA1-JFK-0600"], np.array([0.1, 0.2]), meta)
    store.close()
    assert "Traceback" not in capfd.readouterr().err
