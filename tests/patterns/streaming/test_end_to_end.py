"""A full day streamed end to end equals the offline path; bad messages go to the dead letters."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from patterns.streaming.messages import Topics, encode
from patterns.streaming.replay import Replayer, events_between
from patterns.streaming.worker import StreamWorker
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.predlog import PredictionLog, iter_records
from shared.registry import Registry
from tests.patterns.streaming.conftest import read_topic


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_a_full_day_streamed_equals_the_offline_path(
    bootstrap: str, topics: Topics, registry: Registry, day: tuple[int, int], offline: Callable[..., Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    start, end = day
    replayer = Replayer(bootstrap, topics, partitions=3)
    stats = replayer.replay(start, end)
    replayer.close()
    predictor = Predictor(registry.get("v1"), FLIGHT_FEATURES.fingerprint())
    worker = StreamWorker(
        predictor, bootstrap, topics, max_batch=200, predlog=PredictionLog("streaming", tmp_path)
    )
    try:
        worker.run(idle_exit_s=3.0)
    finally:
        worker.close()

    expected = offline(predictor, start, end)
    assert stats.requests == len(expected) > 800
    values = read_topic(bootstrap, topics.predictions("v1"), lambda v: len(v) >= len(expected))
    got = {v["flight_id"]: v for v in values}
    assert set(got) == set(expected)
    assert all(v["model_version"] == "v1" for v in values)
    assert {fid: v["probability"] for fid, v in got.items()} == {fid: p for fid, (p, _) in expected.items()}
    # "delayed" is the model's own cut (best F1 on its validation month), not 0.5.
    cut = predictor.model.metrics["decision_threshold"]
    assert 0.1 < cut < 0.45 and predictor.decision_threshold == cut
    assert all(v["delayed"] == (v["probability"] >= cut) for v in values)
    assert any(cut <= v["probability"] < 0.5 for v in values)  # flights only the chosen cut flags
    # Features, from the prediction log: every one of the 25 exactly equal to the offline executor's.
    logged = {r["request_id"]: r for r in iter_records("streaming", tmp_path)}
    assert set(logged) == set(expected)
    names = FLIGHT_FEATURES.names
    for fid, (_, x) in expected.items():
        row = logged[fid]["features"]
        assert all(_same(row[n], float(x[j])) for j, n in enumerate(names)), fid
    # The windows were really fed by the stream: most flights see departures in the last hour.
    assert np.mean([logged[f]["features"]["origin_dep_count_1h"] > 0 for f in expected]) > 0.5
    assert worker.stats.bootstraps == 3 and worker.stats.dead_letters == 0


def test_poison_messages_land_in_the_dead_letters_and_the_stream_goes_on(
    bootstrap: str, topics: Topics, registry: Registry, day: tuple[int, int], offline: Callable[..., Any]
) -> None:
    start = day[0] + 10 * 3600
    end = start + 2 * 3600
    replayer = Replayer(bootstrap, topics, partitions=2)
    events = events_between(start, end)
    first = events[events["kind"] == "scheduled"].iloc[0]
    departure = dict(events[events["kind"] == "departed"].iloc[0]["record"])
    poison: list[bytes] = [
        b"\x00\x01 definitely not json",
        b'{"type": "scheduled", "flight_id": "X"}',
        encode("scheduled", first["record"]).replace(b'"hour":', b'"hour":"ten","h":'),
        # Accepted, a time in milliseconds would move the watermark past every later event (all
        # dropped as late) and a NaN delay would spoil the windows' means: both must be refused.
        encode("departed", departure | {"dep_ts": departure["dep_ts"] * 1000}),
        encode("departed", departure | {"event_id": "nan"}).replace(b'"dep_delay":', b'"dep_delay":NaN,"d":'),
    ]
    for i, raw in enumerate(poison):  # before, in the middle of, and after the real events
        replayer.send_raw(raw, key=b"poison", partition=i % 2, ts=start)
    stats = replayer.replay(start, end)
    replayer.send_raw(b"trailing garbage", partition=1, ts=end)
    # Not poison but too late (4 h behind the stream, 1 h allowed): dropped by the policy, counted.
    late = departure | {"event_id": "late", "dep_ts": start - 2 * 3600}
    replayer.send_raw(encode("departed", late), partition=0, ts=end)
    replayer.close()
    poison.append(b"trailing garbage")

    predictor = Predictor(registry.get("v1"), FLIGHT_FEATURES.fingerprint())
    worker = StreamWorker(predictor, bootstrap, topics, max_batch=50)
    try:
        worker.run(idle_exit_s=3.0)
    finally:
        worker.close()

    from kafka import KafkaConsumer

    dlq = KafkaConsumer(
        topics.dead_letters,
        allow_auto_create_topics=False,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    letters = list(dlq)
    dlq.close()
    assert sorted(m.value for m in letters) == sorted(poison)
    errors = {m.value: dict(m.headers)["error"].decode() for m in letters}
    assert "not JSON" in errors[poison[0]] and "required" in errors[poison[1]] and "hour" in errors[poison[2]]
    assert "milliseconds" in errors[poison[3]] and "NaN" in errors[poison[4]]
    assert worker.stats.late_dropped == {"departures": 1}
    assert all(dict(m.headers)["source"].startswith(topics.events.encode()) for m in letters)
    # Every real request still got its prediction, identical to the offline path.
    expected = offline(predictor, start, end)
    assert stats.requests == len(expected)
    got = read_topic(bootstrap, topics.predictions("v1"), lambda v: len(v) >= len(expected))
    assert {v["flight_id"]: v["probability"] for v in got} == {f: p for f, (p, _) in expected.items()}


def test_a_batch_of_only_dead_letters_keeps_the_cut_off(
    bootstrap: str, topics: Topics, registry: Registry, day: tuple[int, int]
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    start = day[0] + 10 * 3600
    cutoff = start + 1800
    replayer = Replayer(bootstrap, topics, partitions=1)
    replayer.replay(start, cutoff)
    replayer.send_raw(b"garbage after the cut-off", partition=0, ts=cutoff)
    replayer.close()
    predictor = Predictor(registry.get("v1"), FLIGHT_FEATURES.fingerprint())
    # A group's first start from --cutoff, where the first batch holds nothing but a dead letter.
    worker = StreamWorker(predictor, bootstrap, topics, cutoff=cutoff, max_batch=50)
    try:
        worker.run(idle_exit_s=3.0)
    finally:
        worker.close()
    assert worker.stats.dead_letters == 1 and worker.stats.predictions == 0
    group = KafkaConsumer(bootstrap_servers=bootstrap, group_id=topics.group("v1"))
    committed = group.committed(TopicPartition(topics.events, 0), metadata=True)
    group.close()
    # Committed past the garbage with the cut-off it started from: an empty cut-off would make the
    # next start replay the partition from its beginning, producing every prediction again.
    assert committed is not None and json.loads(committed.metadata) == {"ts": cutoff}
