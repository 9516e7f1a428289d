"""A worker killed with SIGKILL mid-stream, then scaled out to two: every flight gets its exact prediction."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from patterns.streaming.messages import Topics
from patterns.streaming.replay import Replayer
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.registry import Registry
from tests.patterns.streaming.conftest import read_topic


def test_sigkill_mid_stream_then_scale_out_loses_nothing(
    bootstrap: str, topics: Topics, registry: Registry, day: tuple[int, int], offline: Callable[..., Any],
    workers: Callable[..., Any],
) -> None:  # fmt: skip
    start, end = day
    replayer = Replayer(bootstrap, topics, partitions=3)
    # Paced, so the worker is killed while events are still arriving.
    feeding = threading.Thread(target=replayer.replay, args=(start, end), kwargs={"rate": 400.0})
    feeding.start()
    try:
        first = workers("v1", "--max-batch", "50")
        read_topic(bootstrap, topics.predictions("v1"), lambda v: len(v) >= 100)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        # Restart as two workers of the same group: partitions are spread over them (a rebalance),
        # each rebuilds its partitions' state from history up to the committed cut-off.
        workers("v1", "--max-batch", "50")
        workers("v1", "--max-batch", "50")
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
    # At least once: duplicates may exist (the key lets readers drop them), but each one is identical.
    assert {v["flight_id"] for v in values} == set(expected)
    assert all(v["probability"] == expected[v["flight_id"]][0] for v in values)
    # Both restarted workers took part (partitions were spread) - seen from which partitions advanced.
    assert {v["partition"] for v in values} == {0, 1, 2}
