"""A Kafka outage is waited out: the worker commits once the broker is back, the reader keeps polling.

The shared Kafka is never stopped: the outage test stops and restarts a private broker (the
``private_kafka`` fixture: same ports, same data). A proxy in front of the shared broker would not
do: Kafka clients reconnect to the address the broker advertises in metadata, not the one given.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from patterns.streaming.cli import stream
from patterns.streaming.messages import Topics
from patterns.streaming.reader import Control, PredictionReader, Served
from patterns.streaming.replay import Replayer
from patterns.streaming.worker import StreamWorker
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.predlog import PredictionLog, iter_records
from shared.registry import Registry
from shared.services import Service
from tests.conftest import free_port

pytestmark = pytest.mark.servers

#: Longer than kafka-python's 30 s request timeout: a call that gives up after it fails inside.
OUTAGE_S = 31.0


def test_worker_and_reader_wait_out_a_broker_restart(
    private_kafka: Service, registry: Registry, day: tuple[int, int], tmp_path: Path
) -> None:
    service = private_kafka  # the session's broker is never stopped: this one is the test's alone
    bootstrap, topics = service.endpoint().address, Topics("outage")
    start = day[0] + 10 * 3600
    replayer = Replayer(bootstrap, topics, partitions=1)
    before = replayer.replay(start, start + 1800).requests
    replayer.close()
    Control(bootstrap, topics).publish("v1")
    predictor = Predictor(registry.get("v1"), FLIGHT_FEATURES.fingerprint())
    worker = StreamWorker(
        predictor, bootstrap, topics, max_batch=100, predlog=PredictionLog("streaming", tmp_path)
    )
    reader = PredictionReader(bootstrap, topics)

    # The broker stops between a batch's acknowledged predictions and its commit (the commit then
    # runs against no broker): the moment the reviewer's worker died in. Only the timing is ours.
    commit, outage = worker._consumer.commit, threading.Event()

    def commit_into_an_outage(*args: Any, **kwargs: Any) -> Any:
        if not outage.is_set():
            outage.set()
            service.down(progress=lambda _: None)
            threading.Timer(OUTAGE_S, service.up, kwargs={"progress": lambda _: None}).start()
        return commit(*args, **kwargs)

    worker._consumer.commit = commit_into_an_outage
    done, errors = threading.Event(), []
    served: list[Served] = []

    def run(name: str, loop: Any) -> None:
        try:
            loop()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(f"{name}: {exc!r}")

    def read() -> None:
        while not done.is_set():
            served.extend(reader.poll())

    threads = [
        threading.Thread(target=run, args=("worker", lambda: worker.run(stop=done.is_set))),
        threading.Thread(target=run, args=("reader", read)),
    ]
    for t in threads:
        t.start()
    try:
        assert outage.wait(60), "the worker never committed"
        time.sleep(OUTAGE_S + 1)
        deadline = time.monotonic() + 40
        while service.status().state != "running":  # the restart, then events the worker must see
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.2)
        replayer = Replayer(bootstrap, topics, partitions=1)
        after = replayer.replay(start + 1800, start + 2700).requests
        replayer.close()
        while len({s.flight_id for s in served}) < before + after and not errors:
            assert time.monotonic() < deadline, f"{len(served)} of {before + after} served"
            assert all(t.is_alive() for t in threads), errors
            time.sleep(0.2)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=30)
        reader.close()
        worker.close()
    assert errors == []
    assert len(served) == len({s.flight_id for s in served}) == before + after
    # Nothing was re-processed: each flight is in the prediction log once (a crash between the log
    # and the commit wrote the batch twice), and the group's commit reached the end of the events.
    logged = Counter(r["request_id"] for r in iter_records("streaming", tmp_path))
    assert len(logged) == before + after and set(logged.values()) == {1}
    from kafka import KafkaConsumer, TopicPartition

    tp = TopicPartition(topics.events, 0)
    group = KafkaConsumer(bootstrap_servers=bootstrap, group_id=topics.group("v1"))
    try:
        assert group.committed(tp) == group.end_offsets([tp])[tp]
    finally:
        group.close()


@pytest.mark.parametrize("command", [["read"], ["work", "--version", "v1"]])
def test_a_kafka_that_does_not_answer_is_one_error_line(
    command: list[str], registry: Registry, topics: Topics
) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(stream, [*command, "--prefix", topics.prefix, "--bootstrap", address])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"Error: Kafka at {address} does not answer ("), result.output
    assert len(result.output.splitlines()) == 1 and "Traceback" not in result.output
