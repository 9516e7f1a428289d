"""The replayer against a broker that goes away: it stops with the count of what Kafka never
acknowledged, in bounded time, instead of losing the rest silently (as kafka-python's expired
batches did) or waiting in ``flush`` forever."""

from __future__ import annotations

import threading
import time

import pytest

from patterns.streaming.messages import Topics
from patterns.streaming.replay import Replayer, ReplayError, day_window
from shared.services import Service


def test_a_broker_gone_mid_replay_fails_it_with_what_was_not_acknowledged(private_kafka: Service) -> None:
    replayer = Replayer(
        private_kafka.endpoint().address, Topics("outage"), partitions=2, delivery_timeout_s=4
    )
    start, _ = day_window("2013-06-03")
    stopper = threading.Timer(1.0, private_kafka.down, kwargs={"progress": lambda _: None})
    stopper.start()
    began = time.monotonic()
    with pytest.raises(ReplayError, match="Kafka did not acknowledge") as caught:
        replayer.replay(start, start + 86_400, rate=1000)
    took = time.monotonic() - began
    stopper.join()
    assert "outage.events holds only part of it" in str(caught.value)
    # About 3 s of sending, then at most 1.25 x the delivery timeout + 5 s for the acknowledgements.
    assert took < 20, took
    replayer.close()
