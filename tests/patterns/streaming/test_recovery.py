"""A worker killed with SIGKILL mid-stream, then scaled out to two: every flight gets its exact prediction."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from patterns.streaming.messages import Topics
from patterns.streaming.replay import Replayer
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.registry import Registry
from tests.patterns.streaming.conftest import read_topic


def test_sigkill_mid_stream_then_scale_out_loses_nothing(
    bootstrap: str, topics: Topics, registry: Registry, day: tuple[int, int], offline: Callable[..., Any],
    workers: Callable[..., Any], stream_home: Path,
) -> None:  # fmt: skip
    logs = Path(os.environ.get("STREAM_TEST_LOGS", stream_home))  # where ``workers`` writes their logs
    start, end = day
    replayer = Replayer(bootstrap, topics, partitions=3)
    # Paced, so the worker is killed while events are still arriving.
    feeding = threading.Thread(target=replayer.replay, args=(start, end), kwargs={"rate": 400.0})
    feeding.start()
    try:
        # The broker's shortest session: the killed worker's partitions move on 6 s after its last
        # heartbeat instead of the default 45 s.
        first = workers("v1", "--max-batch", "50", "--session-timeout", "6")
        read_topic(bootstrap, topics.predictions("v1"), lambda v: len(v) >= 100)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        at_kill = _written(bootstrap, topics.predictions("v1"))  # all the killed worker ever wrote
        # Restart as two workers of the same group: partitions are spread over them (a rebalance),
        # each rebuilds its partitions' state from history up to the committed cut-off.
        workers("v1", "--max-batch", "50", "--session-timeout", "6")
        workers("v1", "--max-batch", "50", "--session-timeout", "6")
    finally:
        feeding.join()
        replayer.close()

    predictor = Predictor(registry.get("v1"), FLIGHT_FEATURES.fingerprint())
    expected = offline(predictor, start, end)
    values = read_topic(
        bootstrap,
        topics.predictions("v1"),
        lambda v: {x["flight_id"] for x in v} >= set(expected),
        timeout_s=120,
    )
    # The kill landed mid-stream: the first worker had scored only part of the day; the rest came
    # from the restarted workers.
    assert 100 <= at_kill < len(expected) and len(values) > at_kill
    # At least once: duplicates may exist (the key lets readers drop them), but each one is identical.
    assert {v["flight_id"] for v in values} == set(expected)
    assert all(v["probability"] == expected[v["flight_id"]][0] for v in values)
    # Both restarted workers took part: their latest assignments split the three partitions.
    restarted = [logs / f"{topics.prefix}-v1-{i}.log" for i in (1, 2)]

    def spread() -> bool:
        owned = [_assigned(log) for log in restarted]
        return all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == {0, 1, 2}

    deadline = time.monotonic() + 60
    while not spread():
        assert time.monotonic() < deadline, f"not spread: {[_assigned(log) for log in restarted]}"
        time.sleep(0.5)


def _written(bootstrap: str, topic: str) -> int:
    """Messages in ``topic`` now (the sum of its partitions' end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert tps, f"{topic} has no partitions"
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def _assigned(log: Path) -> set[int]:
    """The partitions of a worker's latest assignment, from the line it prints on each one."""
    if not log.exists():
        return set()
    lines = [line for line in log.read_text().splitlines() if ": assigned partitions [" in line]
    return set(json.loads(lines[-1].split("assigned partitions ", 1)[1])) if lines else set()
