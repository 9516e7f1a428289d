"""Streaming fixtures: two small models in a temporary home, unique topics per test, worker processes.

Every test talks to the real Kafka of the session fixture ``kafka_server`` and uses its own topic
prefix, so tests never see each other's messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from patterns.streaming.messages import Topics
from patterns.streaming.replay import day_window
from patterns.streaming.switch import WorkerPool
from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import OfflineExecutor
from shared.predictor import Predictor
from shared.registry import Registry

#: A February day: both models are trained on January only, so these are unseen flights.
DAY = "2013-02-14"


@pytest.fixture(scope="session")
def stream_home(tmp_path_factory: pytest.TempPathFactory, copy_registry: Callable[[Path], Registry]) -> Path:
    """MLPATTERNS_HOME with a registry holding v1 and v2 (both January, different capacity)."""
    home = tmp_path_factory.mktemp("stream_home")
    copy_registry(home)
    return home


@pytest.fixture
def registry(stream_home: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The session registry; MLPATTERNS_HOME points at its home for this test (and its workers)."""
    monkeypatch.setenv("MLPATTERNS_HOME", str(stream_home))
    return Registry(stream_home / "registry")


@pytest.fixture
def bootstrap(kafka_server: Any) -> str:
    return str(kafka_server.address)


@pytest.fixture
def topics() -> Topics:
    return Topics(f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def day() -> tuple[int, int]:
    return day_window(DAY)


@pytest.fixture(scope="session")
def offline() -> Callable[[Predictor, int, int], dict[str, tuple[float, np.ndarray]]]:
    """flight_id -> (probability, features) computed by the offline path for flights in [start, end)."""
    every = load_flights()
    sources = event_sources(every)

    def compute(predictor: Predictor, start: int, end: int) -> dict[str, tuple[float, np.ndarray]]:
        flights = every[(every["sched_ts"] >= start) & (every["sched_ts"] < end)]
        x = OfflineExecutor(FLIGHT_FEATURES).compute(flights, sources).to_numpy()
        p = predictor.predict_proba(x)
        return {fid: (float(p[i]), x[i]) for i, fid in enumerate(flights["flight_id"])}

    return compute


def read_topic(
    bootstrap: str, topic: str, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 90.0
) -> list[dict[str, Any]]:
    """Values of ``topic`` from the beginning, until ``done(values)`` (fails after ``timeout_s``)."""
    from kafka import KafkaAdminClient, KafkaConsumer

    deadline = time.monotonic() + timeout_s
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    while topic not in admin.list_topics():  # subscribing first could auto-create it with 1 partition
        assert time.monotonic() < deadline, f"{topic} was never created"
        time.sleep(0.2)
    admin.close()
    consumer = KafkaConsumer(
        topic, allow_auto_create_topics=False, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    values: list[dict[str, Any]] = []
    try:
        while not done(values):
            assert time.monotonic() < deadline, (
                f"{topic}: condition not met in {timeout_s}s ({len(values)} msgs)"
            )
            for msgs in consumer.poll(timeout_ms=300).values():
                values.extend(json.loads(m.value) for m in msgs)
    finally:
        consumer.close()
    return values


@pytest.fixture
def workers(
    bootstrap: str, topics: Topics, stream_home: Path, registry: Registry
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``python -m patterns.streaming work`` processes; all are killed at the end of the test."""
    procs: list[subprocess.Popen[bytes]] = []
    pool = WorkerPool(bootstrap, topics, stream_home / "registry")

    def start(version: str, *extra: str) -> subprocess.Popen[bytes]:
        logs = Path(os.environ.get("STREAM_TEST_LOGS", stream_home))  # worker logs, for debugging
        with open(logs / f"{topics.prefix}-{version}-{len(procs)}.log", "ab") as log:
            proc = subprocess.Popen(
                [*pool.command(version), *extra], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ)
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


__all__ = ["DAY", "read_topic", "sys"]
